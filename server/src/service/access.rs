//! One request's access: the policy checks it asks for ([`Ask`]) and what
//! they decided, for the access record the request's end makes
//! ([`crate::access::audit::Ended`]).

use std::sync::{Arc, Mutex};

use crate::access::audit::Decided;
use crate::access::auth::Caller;
use crate::access::authz::{Ctx, Decision, Resource, Unmet, Who};

use super::Result;
use super::error::ServiceError;

/// Metadata key carrying the caller's justification.
pub const JUSTIFICATION_HEADER: &str = "x-tlog-justification";

/// One policy question: may the caller do `action` on `resource`, with
/// the request's facts the policy may look at.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The policy action (`read-entries`, `submit:upload`, ...).
    pub action: &'a str,
    /// What it is done on.
    pub resource: Resource,
    /// The event's environment, for submits.
    pub environment: &'a str,
    /// The event's interface, for submits.
    pub interface: &'a str,
    /// The verified attestation signers, for submits.
    pub signed_by: &'a [String],
}

impl<'a> Ask<'a> {
    /// `action` on the log as a whole (reads, proofs, the stream).
    pub fn log(action: &'a str) -> Self {
        Ask {
            action,
            resource: Resource::Log,
            environment: "",
            interface: "",
            signed_by: &[],
        }
    }

    /// `action` on the artifact `name`, with no event facts (queries).
    pub fn artifact(action: &'a str, name: &str) -> Self {
        Ask {
            resource: Resource::Artifact(name.to_owned()),
            ..Ask::log(action)
        }
    }
}

/// One request's access decisions, filled in by [`Access::check`] and
/// written to the access log when the request ends.
pub struct Access {
    caller: Caller,
    rpc: &'static str,
    justification: String,
    policy: Option<Arc<crate::access::authz::Policy>>,
    state: Mutex<Decided>,
}

impl Access {
    /// A request's access, before any check.
    pub fn new(
        caller: Caller,
        rpc: &'static str,
        justification: String,
        policy: Option<Arc<crate::access::authz::Policy>>,
    ) -> Self {
        Access {
            caller,
            rpc,
            justification,
            policy,
            state: Mutex::new(Decided::default()),
        }
    }

    /// Asks the policy `ask`. Called before any storage is read, so a
    /// denied caller never learns whether the resource exists.
    pub fn check(&self, ask: Ask<'_>) -> Result<()> {
        let decision = match &self.policy {
            None => Decision {
                allowed: true,
                policies: vec!["no-policy-configured".into()],
                errors: vec![],
                unmet: vec![],
            },
            Some(p) => p.decide(
                &self.caller.who,
                ask.action,
                &ask.resource,
                &Ctx {
                    rpc: self.rpc.to_owned(),
                    environment: ask.environment.to_owned(),
                    interface: ask.interface.to_owned(),
                    justification: self.justification.clone(),
                    signed_by: ask.signed_by.to_vec(),
                },
            ),
        };
        let action = ask.action;
        let resource_text = ask.resource.to_string();
        let mut st = self
            .state
            .lock()
            .map_err(|_| ServiceError::Internal("access state".into()))?;
        st.checked = true;
        st.actions.push(action.to_owned());
        st.resources.push(resource_text.clone());
        for p in &decision.policies {
            if !st.policies.contains(p) {
                st.policies.push(p.clone());
            }
        }
        if decision.allowed {
            return Ok(());
        }
        let who = match &self.caller.who {
            Who::Anonymous => "anonymous callers".to_owned(),
            Who::Principal { name, .. } => name.clone(),
        };
        let mut reason = format!(
            "{who} may not {action} on {resource_text}: {}",
            refusal_reason(&decision, self.justification.is_empty())
        );
        if !decision.errors.is_empty() {
            reason.push_str(&format!(" (policy errors: {})", decision.errors.join("; ")));
        }
        st.denied = Some(reason.clone());
        // Without credentials the answer is "authenticate", not "forbidden".
        Err(match self.caller.who {
            Who::Anonymous => {
                ServiceError::Unauthenticated(format!("{reason}; present credentials"))
            }
            Who::Principal { .. } => ServiceError::PermissionDenied(reason),
        })
    }

    /// Adds what exactly was asked for (an index range, a proof's sizes,
    /// a query's filters) to the access record.
    pub fn describe(&self, what: String) {
        if let Ok(mut st) = self.state.lock() {
            st.resources.push(what);
        }
    }

    /// Records a refusal decided outside the policy (a source binding).
    pub fn deny(&self, reason: &str) {
        if let Ok(mut st) = self.state.lock() {
            st.checked = true;
            st.denied = Some(reason.to_owned());
        }
    }

    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The request's justification header (empty if none).
    pub fn justification(&self) -> &str {
        &self.justification
    }

    /// What the checks so far asked and decided.
    pub fn decided(&self) -> Decided {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Why `decision` refused, in words: the forbid policies that matched, or
/// that no policy permits it (Cedar denies by default) and which permits
/// would have but for their conditions; each with what would satisfy it
/// (the policy's `@hint`).
fn refusal_reason(decision: &Decision, no_justification: bool) -> String {
    let with_hint = |u: &Unmet| match &u.hint {
        Some(h) => format!("{}: {h}", u.policy),
        None => u.policy.clone(),
    };
    let forbids: Vec<String> = decision
        .unmet
        .iter()
        .filter(|u| u.forbids)
        .map(with_hint)
        .collect();
    if !forbids.is_empty() {
        return format!("forbidden by policy {}", forbids.join("; and by policy "));
    }
    if !decision.policies.is_empty() {
        return format!("forbidden by policy {}", decision.policies.join(", "));
    }
    let near: Vec<&Unmet> = decision.unmet.iter().filter(|u| !u.forbids).collect();
    let mut reason = "no policy permits it (default deny)".to_owned();
    if near.is_empty() {
        reason.push_str("; no policy applies to this principal, action and resource");
        return reason;
    }
    for u in &near {
        reason.push_str(&format!(
            "; policy {} would, but its conditions are not met",
            u.policy
        ));
        if let Some(h) = &u.hint {
            reason.push_str(&format!(": {h}"));
        }
    }
    // Without a hint, the commonest missing condition is worth naming.
    if no_justification && near.iter().all(|u| u.hint.is_none()) {
        reason.push_str(
            "; no justification was given (x-tlog-justification, `tlog --justification`), \
             which some policies require",
        );
    }
    reason
}
