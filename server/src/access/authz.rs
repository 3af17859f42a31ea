//! Authorization: policy as code with Cedar.
//!
//! The policy file (Cedar) is validated in strict mode against the schema
//! in `server/policy/tlog.cedarschema` at start; a policy that does not
//! parse or validate refuses to start, naming the line. On SIGHUP the file
//! is read again; a reload that fails keeps the old policy and says why.
//! Default deny: a request is allowed only if some `permit` matches and no
//! `forbid` does. Policies may carry `@id("...")`, which decisions report,
//! and `@hint("...")`: what a refused caller must do to satisfy the policy
//! (for a `forbid`, what lifts it; for a `permit`, what its conditions
//! want). A refusal names the forbids that decided it, or, under default
//! deny, the permits whose scope (principal, action, resource) matched but
//! whose conditions did not, each with its hint.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};

/// The schema, compiled into the server.
pub const SCHEMA: &str = include_str!("../../policy/tlog.cedarschema");

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file does not parse or does not validate.
    #[error("policy {path}, line {line}, column {column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// The caller as authorization sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// An authenticated principal with roles.
    Principal {
        /// Its name.
        name: String,
        /// How it was authenticated.
        method: String,
        /// Token issuer or trust domain.
        issuer: String,
        /// Its roles.
        roles: Vec<String>,
    },
    /// No credentials.
    Anonymous,
}

/// What a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// An artifact, by name.
    Artifact(String),
    /// The whole log.
    Log,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Artifact(n) => write!(f, "artifact {n:?}"),
            Resource::Log => f.write_str("log"),
        }
    }
}

/// The context of one decision.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// The RPC.
    pub rpc: String,
    /// The event's environment.
    pub environment: String,
    /// The event's interface.
    pub interface: String,
    /// The caller's justification.
    pub justification: String,
    /// Trusted signers whose attestation verified.
    pub signed_by: Vec<String>,
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed?
    pub allowed: bool,
    /// The policies that decided (their `@id`, else Cedar's policy id).
    pub policies: Vec<String>,
    /// Policy evaluation errors (they never allow).
    pub errors: Vec<String>,
    /// For a refusal: the policies that stand in the way or would have
    /// allowed it, and what would satisfy them. Empty when allowed.
    pub unmet: Vec<Unmet>,
}

/// A policy a refused request did not satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// The policy (its `@id`, else Cedar's policy id).
    pub policy: String,
    /// What would satisfy it (its `@hint`), when the policy says.
    pub hint: Option<String>,
    /// A `forbid` that matched (else a `permit` whose conditions failed).
    pub forbids: bool,
}

/// A validated policy set.
pub struct Policy {
    set: PolicySet,
    /// The `permit` policies with their conditions removed (same ids):
    /// asked only after a default deny, to find the permits whose scope
    /// matched and whose conditions did not.
    scopes: PolicySet,
    schema: Schema,
    authorizer: Authorizer,
    path: PathBuf,
    /// Decisions already made by this policy. A decision depends only on
    /// the principal (with its roles and attributes), the action, the
    /// resource and the context, so the same question gets the same answer
    /// until the policy is replaced (a reload builds a new `Policy`, with
    /// an empty cache). Cleared when full.
    decided: std::sync::Mutex<HashMap<String, Decision>>,
}

/// Most decisions kept per policy.
const DECISION_CACHE: usize = 50_000;

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Policy({})", self.path.display())
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

fn invalid(path: &Path, text: &str, d: &dyn miette::Diagnostic, message: String) -> PolicyError {
    let offset = d
        .labels()
        .and_then(|mut l| l.next())
        .map_or(0, |l| l.offset());
    let (line, column) = line_col(text, offset);
    PolicyError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

fn schema() -> Schema {
    // The schema is part of the program; it is tested to parse.
    match Schema::from_cedarschema_str(SCHEMA) {
        Ok((s, _)) => s,
        Err(e) => unreachable!("built-in schema does not parse: {e}"),
    }
}

impl Policy {
    /// Parses and validates a policy text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| {
            let msg = e.to_string();
            invalid(path, text, &e, msg)
        })?;
        let schema = schema();
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            return Err(invalid(path, text, e, e.to_string()));
        }
        let scopes = permit_scopes(&set);
        Ok(Policy {
            set,
            scopes,
            schema,
            authorizer: Authorizer::new(),
            path: path.to_owned(),
            decided: Default::default(),
        })
    }

    /// Reads, parses and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Decides one request. Errors building the request deny.
    pub fn decide(&self, who: &Who, action: &str, resource: &Resource, ctx: &Ctx) -> Decision {
        // Debug formatting quotes and escapes every string, so distinct
        // questions never share a key.
        let key = format!("{who:?}|{action:?}|{resource:?}|{ctx:?}");
        if let Ok(cache) = self.decided.lock()
            && let Some(d) = cache.get(&key)
        {
            return d.clone();
        }
        let d = match self.try_decide(who, action, resource, ctx) {
            Ok(d) => d,
            Err(e) => Decision {
                allowed: false,
                policies: vec![],
                errors: vec![e],
                unmet: vec![],
            },
        };
        if let Ok(mut cache) = self.decided.lock() {
            if cache.len() >= DECISION_CACHE {
                cache.clear();
            }
            cache.insert(key, d.clone());
        }
        d
    }

    fn try_decide(
        &self,
        who: &Who,
        action: &str,
        resource: &Resource,
        ctx: &Ctx,
    ) -> Result<Decision, String> {
        let uid = |ty: &str, id: &str| -> Result<EntityUid, String> {
            Ok(EntityUid::from_type_name_and_id(
                EntityTypeName::from_str(ty).map_err(|e| e.to_string())?,
                EntityId::new(id),
            ))
        };
        let mut entities = Vec::new();
        let principal = match who {
            Who::Anonymous => {
                let p = uid("Tlog::Anonymous", "anonymous")?;
                entities.push(Entity::new_no_attrs(p.clone(), HashSet::new()));
                p
            }
            Who::Principal {
                name,
                method,
                issuer,
                roles,
            } => {
                let p = uid("Tlog::Principal", name)?;
                let mut parents = HashSet::new();
                for r in roles {
                    let role = uid("Tlog::Role", r)?;
                    entities.push(Entity::new_no_attrs(role.clone(), HashSet::new()));
                    parents.insert(role);
                }
                let attrs = HashMap::from([
                    (
                        "method".to_owned(),
                        RestrictedExpression::new_string(method.clone()),
                    ),
                    (
                        "issuer".to_owned(),
                        RestrictedExpression::new_string(issuer.clone()),
                    ),
                ]);
                entities.push(Entity::new(p.clone(), attrs, parents).map_err(|e| e.to_string())?);
                p
            }
        };
        let res = match resource {
            Resource::Artifact(name) => {
                let r = uid("Tlog::Artifact", name)?;
                let attrs = HashMap::from([(
                    "name".to_owned(),
                    RestrictedExpression::new_string(name.clone()),
                )]);
                entities.push(
                    Entity::new(r.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?,
                );
                r
            }
            Resource::Log => {
                let r = uid("Tlog::Log", "log")?;
                entities.push(Entity::new_no_attrs(r.clone(), HashSet::new()));
                r
            }
        };
        let action_uid = uid("Tlog::Action", action)?;
        let context = Context::from_pairs([
            (
                "rpc".to_owned(),
                RestrictedExpression::new_string(ctx.rpc.clone()),
            ),
            (
                "environment".to_owned(),
                RestrictedExpression::new_string(ctx.environment.clone()),
            ),
            (
                "interface".to_owned(),
                RestrictedExpression::new_string(ctx.interface.clone()),
            ),
            (
                "justification".to_owned(),
                RestrictedExpression::new_string(ctx.justification.clone()),
            ),
            (
                "signed_by".to_owned(),
                RestrictedExpression::new_set(
                    ctx.signed_by
                        .iter()
                        .cloned()
                        .map(RestrictedExpression::new_string),
                ),
            ),
        ])
        .map_err(|e| e.to_string())?;
        // Requests are built here in the schema's shape (the policy was
        // validated strictly against it, and the tests cover every action),
        // so they are not validated again per request; the entities still
        // are, which also brings in the schema's action groups.
        let request =
            Request::new(principal, action_uid, res, context, None).map_err(|e| e.to_string())?;
        let entities =
            Entities::from_entities(entities, Some(&self.schema)).map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        let name = |set: &PolicySet, id: &PolicyId| {
            set.annotation(id, "id")
                .map_or_else(|| id.to_string(), str::to_owned)
        };
        let policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| name(&self.set, id))
            .collect();
        let allowed = response.decision() == CedarDecision::Allow;
        let unmet_in = |set: &PolicySet, ids: &mut dyn Iterator<Item = &PolicyId>, forbids| {
            ids.map(|id| Unmet {
                policy: name(set, id),
                hint: set.annotation(id, "hint").map(str::to_owned),
                forbids,
            })
            .collect::<Vec<_>>()
        };
        let unmet = if allowed {
            Vec::new()
        } else if response.diagnostics().reason().next().is_some() {
            // Forbids decided: each is in the way.
            unmet_in(&self.set, &mut response.diagnostics().reason(), true)
        } else {
            // Default deny: which permits would have applied, but for
            // their conditions?
            let near = self
                .authorizer
                .is_authorized(&request, &self.scopes, &entities);
            unmet_in(&self.scopes, &mut near.diagnostics().reason(), false)
        };
        Ok(Decision {
            allowed,
            policies,
            errors: response
                .diagnostics()
                .errors()
                .map(|e| e.to_string())
                .collect(),
            unmet,
        })
    }
}

/// Every static `permit` of `set` with its `when`/`unless` conditions
/// removed, under the same id and annotations. A policy that cannot be
/// converted is left out (the refusal then names fewer near permits).
fn permit_scopes(set: &PolicySet) -> PolicySet {
    let mut scopes = PolicySet::new();
    for p in set.policies() {
        if p.effect() != Effect::Permit || !p.is_static() {
            continue;
        }
        let Ok(mut json) = p.to_json() else {
            continue;
        };
        if let Some(obj) = json.as_object_mut() {
            obj.insert("conditions".to_owned(), serde_json::Value::Array(vec![]));
        }
        if let Ok(scope) = cedar_policy::Policy::from_json(Some(p.id().clone()), json) {
            let _ = scopes.add(scope);
        }
    }
    scopes
}

/// The live policy, replaceable on reload.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    path: PathBuf,
    current: Arc<RwLock<Arc<Policy>>>,
}

impl PolicyHandle {
    /// Loads the policy at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Ok(PolicyHandle {
            path: path.to_owned(),
            current: Arc::new(RwLock::new(Arc::new(Policy::load(path)?))),
        })
    }

    /// The policy in force.
    pub fn get(&self) -> Option<Arc<Policy>> {
        self.current.read().ok().map(|p| p.clone())
    }

    /// Reads the file again. On error the old policy stays in force.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let p = Policy::load(&self.path)?;
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_parses() {
        let _ = schema();
    }

    #[test]
    fn bad_policies_name_the_line() {
        let text = "permit(principal, action, resource);\n\npermit(principal, action == Tlog::Action::\"nope\", resource);\n";
        let e = Policy::parse(Path::new("p.cedar"), text).expect_err("unknown action");
        let PolicyError::Invalid { line, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(line, 3, "{e}");
        let e = Policy::parse(
            Path::new("p.cedar"),
            "permit(principal,\n action resource);",
        )
        .expect_err("syntax");
        assert!(matches!(e, PolicyError::Invalid { line: 2, .. }), "{e}");
    }

    #[test]
    fn namespaces_and_default_deny() {
        let text = r#"
@id("registry-team-a")
permit(principal in Tlog::Role::"registry", action in [Tlog::Action::"submit:register"], resource is Tlog::Artifact)
when { resource.name like "team-a/*" };
"#;
        let p = Policy::parse(Path::new("p"), text).expect("valid");
        let who = Who::Principal {
            name: "svc".into(),
            method: "bearer".into(),
            issuer: "i".into(),
            roles: vec!["registry".into()],
        };
        let ctx = Ctx::default();
        let d = p.decide(
            &who,
            "submit:register",
            &Resource::Artifact("team-a/m".into()),
            &ctx,
        );
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.policies, vec!["registry-team-a".to_owned()]);
        assert!(
            !p.decide(
                &who,
                "submit:register",
                &Resource::Artifact("team-b/m".into()),
                &ctx
            )
            .allowed
        );
        assert!(
            !p.decide(
                &who,
                "submit:deploy",
                &Resource::Artifact("team-a/m".into()),
                &ctx
            )
            .allowed
        );
        assert!(
            !p.decide(&Who::Anonymous, "read-proofs", &Resource::Log, &ctx)
                .allowed
        );
        // Asked again (now from the decision cache): the same answer; a
        // different context is a different question.
        let again = p.decide(
            &who,
            "submit:register",
            &Resource::Artifact("team-a/m".into()),
            &ctx,
        );
        assert_eq!(again, d);
        let other = Ctx {
            environment: "production".into(),
            ..Ctx::default()
        };
        let d2 = p.decide(
            &who,
            "submit:register",
            &Resource::Artifact("team-b/m".into()),
            &other,
        );
        assert!(!d2.allowed);
    }

    #[test]
    fn refusals_name_what_would_satisfy_them() {
        let text = r#"
@id("query-with-reason")
@hint("give a justification")
permit(principal in Tlog::Role::"auditor", action == Tlog::Action::"query", resource is Tlog::Artifact)
when { context.justification != "" };

@id("deploys-signed")
@hint("sign it")
permit(principal in Tlog::Role::"auditor", action == Tlog::Action::"submit:deploy", resource is Tlog::Artifact);

@id("prod-signed")
@hint("attach the pipeline's attestation")
forbid(principal, action == Tlog::Action::"submit:deploy", resource)
when { context.environment == "production" }
unless { context.signed_by.contains("pipeline") };

permit(principal in Tlog::Role::"auditor", action == Tlog::Action::"watch", resource is Tlog::Log)
when { context.justification == "x" };
"#;
        let p = Policy::parse(Path::new("p"), text).expect("valid");
        let auditor = Who::Principal {
            name: "a".into(),
            method: "bearer".into(),
            issuer: "i".into(),
            roles: vec!["auditor".into()],
        };
        let art = Resource::Artifact("m".into());
        // Default deny, with the permit whose condition failed and its hint.
        let d = p.decide(&auditor, "query", &art, &Ctx::default());
        assert!(!d.allowed);
        assert_eq!(
            d.unmet,
            vec![Unmet {
                policy: "query-with-reason".into(),
                hint: Some("give a justification".into()),
                forbids: false
            }]
        );
        // Satisfied: allowed, nothing unmet.
        let ok = Ctx {
            justification: "INC-1".into(),
            ..Ctx::default()
        };
        let d = p.decide(&auditor, "query", &art, &ok);
        assert!(d.allowed && d.unmet.is_empty(), "{d:?}");
        // A forbid decided: it is named with its hint, not the permits.
        let prod = Ctx {
            environment: "production".into(),
            ..Ctx::default()
        };
        let d = p.decide(&auditor, "submit:deploy", &art, &prod);
        assert_eq!(
            d.unmet,
            vec![Unmet {
                policy: "prod-signed".into(),
                hint: Some("attach the pipeline's attestation".into()),
                forbids: true
            }]
        );
        // A permit without annotations is named by Cedar's id.
        let d = p.decide(&auditor, "watch", &Resource::Log, &Ctx::default());
        assert_eq!(d.unmet.len(), 1, "{d:?}");
        assert_eq!(d.unmet[0].hint, None);
        assert!(d.unmet[0].policy.starts_with("policy"), "{d:?}");
        // No permit's scope matches: nothing near.
        let d = p.decide(&Who::Anonymous, "query", &art, &ok);
        assert!(!d.allowed && d.unmet.is_empty(), "{d:?}");
    }
}
