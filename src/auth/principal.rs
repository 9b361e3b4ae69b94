use uuid::Uuid;
use vulnledger_aggregates::Role;

use super::Scope;
use crate::commands::{Actor, CommandContext};

/// An authenticated caller. The tenant comes only from here, never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub user_id: Uuid,
    pub email: String,
    /// The user's role now (for an API key: its creator's), not when the token was made.
    pub role: Role,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Session { session_id: Uuid },
    ApiKey { key_id: Uuid, scopes: Vec<Scope> },
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::user(self.user_id, self.email.clone())
    }

    pub fn command_context(&self) -> CommandContext {
        CommandContext {
            tenant_id: self.tenant_id,
            actor: self.actor(),
            request_id: crate::http::request_id::current().unwrap_or_default(),
        }
    }

    pub fn session_id(&self) -> Option<Uuid> {
        match self.via {
            Via::Session { session_id } => Some(session_id),
            Via::ApiKey { .. } => None,
        }
    }
}
