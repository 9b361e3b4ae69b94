//! `/assets`: every asset with findings, worst first, from the findings projection.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use vulnledger_aggregates::Severity;

use crate::auth::{perm, Authorized};
use crate::http::pagination::{ApiQuery, PageParams, Paginated};
use crate::http::{ApiJson, AppState, Error};
use crate::read_models::assets::{self, AssetFilter, AssetView};

pub const TAG: &str = "assets";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Case-insensitive substring of the asset name.
    pub search: Option<String>,
    /// Assets with an open finding of one of these severities (comma-separated).
    pub severity: Option<String>,
    /// Assets with a finding carrying one of these tags (comma-separated).
    pub tag: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// 1-based page number; not with `cursor`.
    pub page: Option<i64>,
    /// Opaque `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Assets of your tenant: highest open severity first, then most open findings.
#[utoipa::path(get, path = "/assets", tag = TAG, params(ListParams),
    responses((status = 200, body = Paginated<AssetView>), (status = 400)),
    security(("bearer" = []), ("apiKey" = ["findings:read"])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Authorized<perm::FindingsRead>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<Paginated<AssetView>>, Error> {
    let page = PageParams {
        limit: params.limit,
        page: params.page,
        cursor: params.cursor.clone(),
    }
    .validate()?;
    let split = |raw: Option<&str>| -> Option<Vec<String>> {
        let items: Vec<String> = raw?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        (!items.is_empty()).then_some(items)
    };
    let severities = split(params.severity.as_deref())
        .map(|items| {
            items
                .iter()
                .map(|s| {
                    s.parse::<Severity>()
                        .map_err(|_| Error::BadRequest(format!("unknown severity {s:?}")))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let filter = AssetFilter {
        search: params
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase),
        severities,
        tags: split(params.tag.as_deref()),
    };
    let tenant = principal.tenant_id;
    let (rows, total) = tokio::try_join!(
        assets::page(
            &state.pool,
            tenant,
            &filter,
            page.limit,
            page.offset(),
            page.after.as_ref()
        ),
        assets::total(&state.pool, tenant, &filter),
    )?;
    let rows = rows.map_err(Error::BadRequest)?;
    let data = rows.into_iter().map(AssetView::from).collect();
    Ok(ApiJson(Paginated::new(
        data,
        total,
        &page,
        assets::cursor_of,
    )))
}
