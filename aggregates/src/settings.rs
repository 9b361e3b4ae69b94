//! Per-tenant settings. They exist implicitly with defaults, so there is no creation command
//! and no NotFound: a tenant that never changed anything simply has the default policy.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DomainError, SlaPolicy};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantSettingsCommand {
    ChangeSlaPolicy {
        policy: SlaPolicy,
        at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum TenantSettingsEvent {
    SlaPolicyChanged(SlaPolicyChanged),
}

domain_events!(TenantSettingsEvent for TenantSettings {
    SlaPolicyChanged => "1.0",
});

/// Carries the whole new policy, not a diff, so readers never need earlier events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlaPolicyChanged {
    pub policy: SlaPolicy,
    pub at: DateTime<Utc>,
}

/// Settings state as rebuilt from its events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TenantSettings {
    pub sla: SlaPolicy,
    /// Events applied so far; the HTTP layer's ETag.
    pub version: u64,
}

impl TenantSettings {
    /// The events `command` produces, without changing `self`.
    pub fn decide(
        &self,
        command: TenantSettingsCommand,
    ) -> Result<Vec<TenantSettingsEvent>, DomainError> {
        match command {
            TenantSettingsCommand::ChangeSlaPolicy { policy, at } => {
                policy.validate()?;
                // Saving an unchanged form must not churn SLA recomputation downstream.
                if policy == self.sla {
                    return Ok(Vec::new());
                }
                Ok(vec![SlaPolicyChanged { policy, at }.into()])
            }
        }
    }
}

impl Aggregate for TenantSettings {
    const TYPE: &'static str = "settings";
    type Command = TenantSettingsCommand;
    type Event = TenantSettingsEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        match event {
            TenantSettingsEvent::SlaPolicyChanged(e) => self.sla = e.policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::test_support::{hours, t0};

    type Framework = TestFramework<TenantSettings>;

    fn stricter() -> SlaPolicy {
        SlaPolicy {
            critical: 3,
            high: 14,
            ..SlaPolicy::default()
        }
    }

    fn change(policy: SlaPolicy) -> TenantSettingsCommand {
        TenantSettingsCommand::ChangeSlaPolicy { policy, at: t0() }
    }

    #[test]
    fn a_new_tenant_starts_with_the_default_policy() {
        assert_eq!(TenantSettings::default().sla, SlaPolicy::default());
    }

    #[test]
    fn changing_the_policy_records_the_whole_new_policy() {
        Framework::with(())
            .given_no_previous_events()
            .when(change(stricter()))
            .then_expect_events(vec![SlaPolicyChanged {
                policy: stricter(),
                at: t0(),
            }
            .into()]);
    }

    #[test]
    fn saving_the_current_policy_again_records_nothing() {
        Framework::with(())
            .given_no_previous_events()
            .when(change(SlaPolicy::default()))
            .then_expect_events(vec![]);
        Framework::with(())
            .given(vec![SlaPolicyChanged {
                policy: stricter(),
                at: t0(),
            }
            .into()])
            .when(TenantSettingsCommand::ChangeSlaPolicy {
                policy: stricter(),
                at: hours(1),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn going_back_to_the_default_after_a_change_is_recorded() {
        Framework::with(())
            .given(vec![SlaPolicyChanged {
                policy: stricter(),
                at: t0(),
            }
            .into()])
            .when(change(SlaPolicy::default()))
            .then_expect_events(vec![SlaPolicyChanged {
                policy: SlaPolicy::default(),
                at: t0(),
            }
            .into()]);
    }

    #[test]
    fn a_zero_day_deadline_is_invalid_and_names_its_severity() {
        Framework::with(())
            .given_no_previous_events()
            .when(change(SlaPolicy {
                critical: 0,
                ..SlaPolicy::default()
            }))
            .then_expect_error(DomainError::invalid(
                "policy.CRITICAL",
                "must be between 1 and 3650 days",
            ));
    }

    #[test]
    fn a_deadline_over_ten_years_is_invalid_for_every_severity() {
        for severity in crate::Severity::ALL {
            let mut policy = SlaPolicy::default();
            match severity {
                crate::Severity::Critical => policy.critical = 3651,
                crate::Severity::High => policy.high = 3651,
                crate::Severity::Medium => policy.medium = 3651,
                crate::Severity::Low => policy.low = 3651,
                crate::Severity::Info => policy.info = 3651,
            }
            Framework::with(())
                .given_no_previous_events()
                .when(change(policy))
                .then_expect_error(DomainError::invalid(
                    format!("policy.{severity}"),
                    "must be between 1 and 3650 days",
                ));
        }
    }

    #[test]
    fn applying_a_change_replaces_the_policy_and_counts_the_version() {
        let mut settings = TenantSettings::default();
        settings.apply(
            SlaPolicyChanged {
                policy: stricter(),
                at: t0(),
            }
            .into(),
        );
        assert_eq!(settings.sla, stricter());
        assert_eq!(settings.version, 1);
    }
}
