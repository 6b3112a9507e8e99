//! The verifier core's frame: the rules it applies (lifetimes, quarantine after silence), the
//! nonce source it draws challenges from, the policy governing a device, and the shared tail of
//! every decision — issue or withdraw challenges, apply an appraisal to the device's state
//! machine, issue the verdict with its lifetime, turn the transition into audit entries and
//! commands. Entry points are in `inbound`, `operator` and `expiry`.

use thiserror::Error;

use crate::appraisal::{Appraisal, Policy, Vetting, vet};
use crate::device::{Basis, Effect, Transition};
use crate::ids::Nonce;
use crate::messages::Challenge;
use crate::nonce::IssuedNonce;
use crate::policy::{Measurements, PolicyScope, ReferenceValues, policy_id};
use crate::supply_chain::SupplyChainPolicy;
use crate::vendor::trust::BundleRecord;
use crate::verdict::DeviceState;

use super::effects::{Effects, ExpiryMove, NonceWrite, Outbound, VerdictDraft};
use super::record::{AuditRecord, DeviceRecord};

/// Challenges a device may have open at once; issuing more retires the oldest.
pub const MAX_OUTSTANDING: usize = 4;

/// The default [`Rules::max_eventlog`]: real firmware logs are tens of KiB.
pub const MAX_EVENTLOG: usize = 4 << 20;

/// The operator's tunables the core decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Lifetime of a challenge nonce (seconds).
    pub nonce_ttl: u64,
    /// How long a verdict may be relied on (seconds, at least 1: renewed verdicts must expire
    /// after the sweep that renewed them; the verifier's config layer refuses 0).
    pub verdict_ttl: u64,
    /// `ear.verifier-id` of the verdicts.
    pub verifier_id: String,
    /// Consecutive verdict periods without fresh evidence after which an unresponsive device is
    /// quarantined (0 = never).
    pub quarantine_after_expiries: u32,
    /// Largest reassembled event log accepted (bytes); a larger one is refused as oversized.
    pub max_eventlog: usize,
    /// A device whose EK certificate did not chain to a trusted TPM-manufacturer root when it
    /// was enrolled (`Enrollment::ek_cert_anchor` is `None`) is at best `warning`, naming
    /// `ek_cert_untrusted` (the operator's `require_ek_cert`; true outside the demo).
    pub require_ek_cert: bool,
}

/// Where challenge nonces come from: the operating system's RNG in the verifier, a
/// deterministic sequence in tests. Nonces must be unpredictable to devices in production.
pub trait NonceSource {
    fn draw(&mut self) -> Result<Nonce, NonceUnavailable>;
}

/// The nonce source failed; no challenge can be issued (the shell's RNG is broken).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("no randomness for a challenge nonce: {0}")]
pub struct NonceUnavailable(pub String);

/// What governs a device's appraisal, as the shell looked it up (see [`governing_with`]): its
/// reference values, whether the firmware it runs was revoked, and the operator's supply-chain
/// policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governing {
    /// Where they were looked for, for the "no reference values" reason.
    pub subject: String,
    pub found: Option<GoverningValues>,
    /// The revocation of the bundle for the device's model and firmware version, if revoked.
    pub revoked: Option<RevokedFirmware>,
    /// The operator's supply-chain policy, if one is set.
    pub supply_chain: Option<SupplyChainPolicy>,
    /// The revoked bundles of the device's model (see [`Lookup::revoked_bundles`]).
    pub revoked_bundles: Vec<BundleRecord>,
}

/// A firmware version whose vendor bundle the operator revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedFirmware {
    pub model: String,
    pub version: String,
    pub reason: String,
}

/// The shell's point reads for [`governing_with`] (the engine's write transaction).
pub trait Lookup {
    type Error;
    /// The operator's reference values at a device or model scope.
    fn policy(&mut self, scope: &PolicyScope) -> Result<Option<ReferenceValues>, Self::Error>;
    /// The bundle imported for `model` at firmware `version`, revoked or not.
    fn bundle(&mut self, model: &str, version: &str) -> Result<Option<BundleRecord>, Self::Error>;
    /// The operator's supply-chain policy.
    fn supply_chain(&mut self) -> Result<Option<SupplyChainPolicy>, Self::Error>;
    /// Every revoked bundle of `model` (a handful per model). Measurements that satisfy one
    /// are that revoked firmware whatever version the device reports, so relabelling the
    /// version does not escape the revocation.
    fn revoked_bundles(&mut self, model: &str) -> Result<Vec<BundleRecord>, Self::Error> {
        let _ = model;
        Ok(Vec::new())
    }
}

/// A [`Lookup`] of the operator's reference values only: no bundles, no supply-chain policy.
struct PoliciesOnly<F>(F);

impl<E, F> Lookup for PoliciesOnly<F>
where
    F: FnMut(&PolicyScope) -> Result<Option<ReferenceValues>, E>,
{
    type Error = E;

    fn policy(&mut self, scope: &PolicyScope) -> Result<Option<ReferenceValues>, E> {
        (self.0)(scope)
    }

    fn bundle(&mut self, _: &str, _: &str) -> Result<Option<BundleRecord>, E> {
        Ok(None)
    }

    fn supply_chain(&mut self) -> Result<Option<SupplyChainPolicy>, E> {
        Ok(None)
    }
}

/// Reference values with the scope they were found at, and the policy id and scope label
/// verdicts and reasons name them by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoverningValues {
    pub scope: PolicyScope,
    pub values: ReferenceValues,
    pub id: String,
    pub label: String,
}

impl Governing {
    pub fn policy(&self) -> Option<Policy<'_>> {
        self.found.as_ref().map(|f| Policy {
            values: &f.values,
            id: &f.id,
            label: &f.label,
        })
    }

    /// Whether the reference values at `scope` are the ones governing the device, so a change
    /// of them re-evaluates it (a model's do not govern a device with its own).
    pub fn is_governed_by(&self, scope: &PolicyScope) -> bool {
        self.found.as_ref().is_some_and(|f| &f.scope == scope)
    }
}

/// The operator's reference values governing `rec` (its own, else its model's), looked up one
/// scope at a time by `lookup`; no vendor bundle, revocation or supply-chain policy (see
/// [`governing_with`] for those).
pub fn governing<E>(
    rec: &DeviceRecord,
    lookup: impl FnMut(&PolicyScope) -> Result<Option<ReferenceValues>, E>,
) -> Result<Governing, E> {
    governing_with(rec, None, &mut PoliciesOnly(lookup))
}

/// The firmware version that selects `rec`'s vendor bundle: the one `reported` (by the
/// evidence being appraised, or with the stored measurements), else the one its manifest says
/// the vendor provisioned.
pub fn firmware_version<'a>(rec: &'a DeviceRecord, reported: Option<&'a str>) -> Option<&'a str> {
    reported.or(rec
        .enrollment
        .provenance
        .as_ref()
        .map(|p| p.firmware_version.as_str()))
}

/// What governs `rec`'s appraisal, in point reads. Reference values: its own when it has any,
/// else its model's (read only when the device has none), else those of the vendor bundle for
/// its model at [`firmware_version`]. The bundle is read whenever a version is known: its
/// revocation applies even under the operator's own values. And the supply-chain policy.
pub fn governing_with<L: Lookup>(
    rec: &DeviceRecord,
    reported: Option<&str>,
    lookup: &mut L,
) -> Result<Governing, L::Error> {
    let model_name = &rec.enrollment.model;
    let version = firmware_version(rec, reported);
    let mut subject = format!("device {} or model {model_name}", rec.id());
    if let Some(v) = version {
        subject.push_str(&format!(" or firmware {model_name}@{v}"));
    }
    let dev = PolicyScope::Device(rec.id().to_string());
    let model = PolicyScope::Model(model_name.clone());
    let bundle = match version {
        Some(v) => lookup.bundle(model_name, v)?,
        None => None,
    };
    let mut found = match lookup.policy(&dev)? {
        Some(v) => Some((dev, v)),
        None => lookup.policy(&model)?.map(|v| (model, v)),
    };
    let mut revoked = None;
    if let Some(b) = bundle {
        revoked = b.revoked.as_ref().map(|r| RevokedFirmware {
            model: b.model.clone(),
            version: b.firmware_version.clone(),
            reason: r.reason.clone(),
        });
        if found.is_none() {
            let scope = PolicyScope::Firmware {
                model: b.model,
                version: b.firmware_version,
            };
            found = Some((scope, b.reference));
        }
    }
    Ok(Governing {
        subject,
        found: found.map(|(scope, values)| GoverningValues {
            id: policy_id(&scope, &values),
            label: scope.label(),
            scope,
            values,
        }),
        revoked,
        supply_chain: lookup.supply_chain()?,
        revoked_bundles: lookup.revoked_bundles(model_name)?,
    })
}

impl Rules {
    /// `a`, the appraisal of `m` (measurements of `rec`'s device) against `gov`'s reference
    /// values, with the chain-of-trust checks added ([`vet`]) when its quote was accepted.
    pub(super) fn vetted(
        &self,
        a: Appraisal,
        m: &Measurements,
        rec: &DeviceRecord,
        gov: &Governing,
    ) -> Appraisal {
        if !a.quote_accepted {
            return a;
        }
        let e = &rec.enrollment;
        let ek_cert_untrusted = (self.require_ek_cert && e.ek_cert_anchor.is_none()).then(|| {
            let has_cert = e.ek_certificate.is_some()
                || e.provenance
                    .as_ref()
                    .is_some_and(|p| !p.ek_certificates.is_empty());
            if has_cert {
                "its EK certificate did not chain to a trusted root when it was enrolled"
            } else {
                "it was enrolled without an EK certificate"
            }
        });
        // The reported version's revocation, else any revoked bundle of the model whose
        // reference values these measurements satisfy: the device runs that firmware, whatever
        // version it reports.
        let revoked = gov
            .revoked
            .as_ref()
            .map(|r| (r.model.as_str(), r.version.as_str(), r.reason.as_str()))
            .or_else(|| {
                gov.revoked_bundles.iter().find_map(|b| {
                    let r = b.revoked.as_ref()?;
                    crate::policy::evaluate(&b.reference, m, "")
                        .is_empty()
                        .then_some((
                            b.model.as_str(),
                            b.firmware_version.as_str(),
                            r.reason.as_str(),
                        ))
                })
            });
        let v = Vetting {
            baseline: e.provenance.as_ref().map(|p| &p.inventory),
            supply_chain: gov.supply_chain.as_ref(),
            revoked,
            ek_cert_untrusted,
        };
        vet(a, m, &v)
    }
}

/// When a verdict issued at `now` stops being reliable. A verdict is worth no more than the quote
/// behind it: one re-appraising stored measurements (`Basis::Stored`) expires a verdict lifetime
/// after they were measured, at the latest a lifetime from now. One saying there is no fresh
/// evidence (`unresponsive`) covers a lifetime from now, like the sweep's renewals, as does one
/// on fresh evidence.
pub fn verdict_expiry(
    basis: Basis,
    measured_at: Option<u64>,
    state: DeviceState,
    now: u64,
    verdict_ttl: u64,
) -> u64 {
    let from_now = now.saturating_add(verdict_ttl);
    match (basis, measured_at) {
        _ if state == DeviceState::Unresponsive => from_now,
        (Basis::Stored { .. }, Some(m)) => m.saturating_add(verdict_ttl).min(from_now),
        _ => from_now,
    }
}

/// The verifier's decisions. Stateless apart from its rules: every call takes the device record
/// the shell loaded, the input, `now` and a nonce source, and returns [`Effects`].
#[derive(Debug, Clone)]
pub struct VerifierCore {
    pub(super) rules: Rules,
}

impl VerifierCore {
    /// A core deciding by `rules`. A `verdict_ttl` of 0 (which the config layer refuses with an
    /// error) is taken as 1 s, so that no code path building `Rules` directly can make the
    /// expiry sweep renew verdicts that are already expired.
    pub fn new(mut rules: Rules) -> Self {
        rules.verdict_ttl = rules.verdict_ttl.max(1);
        Self { rules }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub(super) fn step<'a>(
        &'a self,
        rec: DeviceRecord,
        now: u64,
        nonces: &'a mut dyn NonceSource,
    ) -> Step<'a> {
        Step {
            rules: &self.rules,
            rec,
            now,
            nonces,
            effects: Effects::default(),
        }
    }
}

/// One decision on one device in progress: the record as it changes and the effects so far.
pub(super) struct Step<'a> {
    rules: &'a Rules,
    pub rec: DeviceRecord,
    pub now: u64,
    nonces: &'a mut dyn NonceSource,
    pub effects: Effects,
}

impl Step<'_> {
    /// The effects, storing the record as it now is.
    pub fn into_effects(mut self) -> Effects {
        self.effects.device = Some(self.rec);
        self.effects
    }

    /// Issues a challenge carrying `request`; past [`MAX_OUTSTANDING`] open ones, the oldest is
    /// withdrawn (expired ones are forgotten: their records stay until pruned, refused as expired).
    pub fn issue_challenge(&mut self, request: u64) -> Result<(), NonceUnavailable> {
        let nonce = self.nonces.draw()?;
        let now = self.now;
        let expires_at = now.saturating_add(self.rules.nonce_ttl);
        self.effects.nonces.push(NonceWrite::Put(
            nonce,
            IssuedNonce {
                device: self.rec.id().clone(),
                issued_at: now,
                expires_at,
                used_at: None,
            },
        ));
        let open = &mut self.rec.outstanding;
        open.retain(|(_, exp)| *exp >= now);
        open.push((nonce, expires_at));
        while open.len() > MAX_OUTSTANDING {
            let (old, _) = open.remove(0);
            self.effects.nonces.push(NonceWrite::Remove(old));
        }
        self.effects.messages.push(Outbound::Challenge(Challenge {
            nonce,
            issued_at: now,
            expires_at,
            request,
            eventlog_held: self.rec.eventlog_held,
        }));
        Ok(())
    }

    /// Withdraws every challenge the device holds, so evidence quoted before this moment (a
    /// quarantine, a release) can never be counted after it.
    pub fn retire_challenges(&mut self) {
        for (nonce, _) in self.rec.outstanding.drain(..) {
            self.effects.nonces.push(NonceWrite::Remove(nonce));
        }
    }

    /// Applies `a` to the device's state machine, issues the verdict (with [`verdict_expiry`]'s
    /// lifetime) and carries out the transition.
    pub fn finish(
        &mut self,
        a: Appraisal,
        basis: Basis,
        nonce: Option<Nonce>,
    ) -> Result<(), NonceUnavailable> {
        let (t, verdict) = self.rec.status.apply_appraisal(a, basis, self.now);
        let exp = verdict_expiry(
            basis,
            self.rec.measured_at,
            self.rec.status.state(),
            self.now,
            self.rules.verdict_ttl,
        );
        self.issue_verdict(verdict, nonce, exp);
        self.carry_out(t)
    }

    /// Issues `a` as the device's current verdict, expiring at `exp`, and moves its entry in the
    /// verdict-expiry index there.
    pub fn issue_verdict(&mut self, a: Appraisal, nonce: Option<Nonce>, exp: u64) {
        let draft = VerdictDraft::new(
            a,
            self.rec.id().clone(),
            self.rec.status.state(),
            &self.rules.verifier_id,
            nonce,
            (self.now, exp),
        );
        // The index entry to move is the stored verdict's (a second verdict in one step would
        // replace the first before anything is written).
        let from = match self.effects.verdict_expiry {
            Some(m) => m.from,
            None => self.rec.last_verdict().map(|v| v.exp),
        };
        self.effects.verdict_expiry = Some(ExpiryMove { from, to: exp });
        self.rec.status.last_verdict_at = Some(self.now);
        self.effects
            .messages
            .push(Outbound::Verdict(Box::new(draft)));
    }

    /// Issues the quarantine's held verdict: contraindicated, naming the quarantine, under the
    /// last verdict's policy, for a verdict lifetime from now. The retained verdict names the
    /// quarantine from this moment on.
    pub fn issue_held_verdict(&mut self) {
        let policy = self.rec.last_verdict().and_then(|v| v.policy_id);
        let held = self.rec.status.held_appraisal(policy);
        let exp = self.lifetime_from_now();
        self.issue_verdict(held, None, exp);
    }

    /// The verdict lifetime from now, for verdicts that stand for no quote.
    pub fn lifetime_from_now(&self) -> u64 {
        self.now.saturating_add(self.rules.verdict_ttl)
    }

    /// Turns a transition into audit entries, commands and challenges.
    pub fn carry_out(&mut self, t: Transition) -> Result<(), NonceUnavailable> {
        for c in t.changes {
            self.effects.audit.push(AuditRecord {
                at: self.now,
                device: Some(self.rec.id().clone()),
                action: c.action,
                actor: c.actor,
                reason: c.reason,
            });
        }
        for e in t.effects {
            match e {
                Effect::SendCmd(action) => self.effects.messages.push(Outbound::Cmd {
                    issued_at: self.now,
                    action,
                }),
                Effect::SendChallenge => self.issue_challenge(0)?,
            }
        }
        Ok(())
    }
}
