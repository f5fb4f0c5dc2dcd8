//! The operator's plugins, wired in: the gateway's log-in policy, and the packet cores'
//! admission decisions and audit events. Every hook runs on the plugin runner's own threads with
//! a time budget (never on a packet core or a gateway thread); a timeout or error denies.

use crate::shard::CoreCmd;
use flock_engine::Commander;
use flock_plugins::{
    AuditEvent, LoginAttempt as PluginAttempt, PersonaQuery, Registration, Runner,
    Verdict as PluginVerdict,
};
use flock_proto::identity::to_hex;
use flock_proto::server::PolicyEvent;
use flock_ws::policy::BoxFuture;
use flock_ws::{LoginAttempt, Outcome, Persona, Policy, Verdict};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

fn verdict(v: PluginVerdict) -> Verdict {
    match v {
        PluginVerdict::Allow => Verdict::Allow,
        PluginVerdict::Deny => Verdict::Deny,
        PluginVerdict::RetryAfter(d) => Verdict::RetryAfter(d),
    }
}

/// The gateway's [`Policy`] on top of the plugin runner.
pub struct PluginPolicy(pub Arc<Runner>);

impl Policy for PluginPolicy {
    fn authorize_login(&self, a: LoginAttempt) -> BoxFuture<Verdict> {
        let pending = self.0.authorize_login(PluginAttempt {
            appliance: a.appliance,
            persona: a.persona,
            client: a.client,
            origin: a.origin,
        });
        Box::pin(async move { verdict(pending.await) })
    }

    fn filter_personas(
        &self,
        appliance: String,
        client: SocketAddr,
        personas: Vec<Persona>,
    ) -> BoxFuture<Option<Vec<Persona>>> {
        let query = PersonaQuery {
            appliance,
            client,
            personas: personas
                .iter()
                .map(|p| flock_plugins::Persona {
                    id: p.id.clone(),
                    name: p.name.clone(),
                })
                .collect(),
        };
        let pending = self.0.filter_personas(query);
        Box::pin(async move {
            let keep = pending.await?;
            Some(
                personas
                    .into_iter()
                    .zip(keep)
                    .filter_map(|(p, k)| k.then_some(p))
                    .collect(),
            )
        })
    }

    fn audit_login(&self, a: &LoginAttempt, outcome: Outcome) {
        let (appliance, persona, client) = (a.appliance.clone(), a.persona.clone(), a.client);
        self.0.audit(match outcome {
            Outcome::Accepted => AuditEvent::LoginOk {
                appliance,
                persona,
                client,
            },
            Outcome::Failed => AuditEvent::LoginFailed {
                appliance,
                persona,
                client,
                reason: "refused".into(),
            },
        });
    }
}

/// What a packet core needs to hand its policy events to the plugins and get verdicts back.
pub struct CorePolicy {
    pub runner: Arc<Runner>,
    /// Set once the engine runs (the cores are built before their commander exists).
    pub commander: OnceLock<Commander<CoreCmd>>,
}

impl CorePolicy {
    /// Hands one event of core `core`'s state machine to the plugins.
    pub fn dispatch(self: &Arc<Self>, core: usize, event: PolicyEvent) {
        match event {
            PolicyEvent::Admit {
                name,
                fingerprint,
                addr,
                key_change,
            } => {
                let me = self.clone();
                let r = Registration {
                    name: name.as_str().to_owned(),
                    fingerprint: fingerprint.0,
                    addr,
                    key_change,
                };
                self.runner.admit_registration_then(r, move |v| {
                    // Not waiting for a retry: the appliance retransmits, and a new REGISTER asks again.
                    let allow = v == PluginVerdict::Allow;
                    if let Some(c) = me.commander.get() {
                        let _ = c.send(
                            core,
                            CoreCmd::Admission {
                                name,
                                fingerprint,
                                allow,
                            },
                        );
                    }
                });
            }
            PolicyEvent::Registered {
                name,
                fingerprint,
                addr,
            } => self.runner.audit(AuditEvent::Registered {
                name: name.as_str().to_owned(),
                fingerprint: fingerprint.0,
                addr,
            }),
            PolicyEvent::AddressChanged {
                name,
                fingerprint,
                old,
                new,
            } => self.runner.audit(AuditEvent::AddressChanged {
                name: name.as_str().to_owned(),
                fingerprint: fingerprint.0,
                old,
                new,
            }),
            PolicyEvent::Expired {
                key,
                fingerprint_prefix,
                addr,
            } => {
                // The table keeps no names: "#" + the name's table key, and the fingerprint's
                // first 12 bytes (the rest zero). docs/PLUGINS.md says so.
                let mut fingerprint = [0; 32];
                fingerprint[..fingerprint_prefix.len()].copy_from_slice(&fingerprint_prefix);
                self.runner.audit(AuditEvent::Expired {
                    name: format!("#{}", to_hex(&key)),
                    fingerprint,
                    addr,
                })
            }
        }
    }
}
