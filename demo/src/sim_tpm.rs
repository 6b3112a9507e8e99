//! The simulated TPM (`vouch-sim`) seen through the agent's TPM trait, so a simulated demo
//! terminal runs the real agent shell (`vouch_agent::session`, `attester`, `measure`, `enroll`)
//! with only the TPM swapped. Opening it takes the TPM's lock until the round is over, as swtpm
//! serves one client at a time. A simulated TPM has no wrapped key blob: its AK "blob" is the
//! AK's public area with an empty private part, and a quote checks that public area is its own.

use std::sync::{Mutex, MutexGuard};

use vouch_agent::tpm::{
    AgentTpm, AkBlobs, ClockInfo, Quote, TpmConnector, TpmError, TpmIdentity, TpmInfo,
};
use vouch_protocol::tpm::PCR_COUNT;
use vouch_sim::{SimError, SimTpm};

/// A simulated TPM shared between the demo (which boots it) and the agent shell (which opens
/// it per round).
#[derive(Debug)]
pub struct SimConnector {
    tpm: Mutex<SimTpm>,
}

fn poisoned() -> TpmError {
    TpmError::Backend {
        what: "locking the simulated TPM",
        source: "a thread panicked while it held the simulated TPM".into(),
    }
}

impl SimConnector {
    pub fn new(tpm: SimTpm) -> Self {
        Self {
            tpm: Mutex::new(tpm),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, SimTpm>, TpmError> {
        self.tpm.lock().map_err(|_| poisoned())
    }

    /// Runs `f` on the TPM while no agent round has it open (for the demo's "firmware": reboot
    /// and extend the boot log's digests).
    pub fn with<R>(&self, f: impl FnOnce(&mut SimTpm) -> R) -> Result<R, TpmError> {
        Ok(f(&mut *self.lock()?))
    }
}

impl TpmConnector for SimConnector {
    fn open(&self) -> Result<Box<dyn AgentTpm + '_>, TpmError> {
        Ok(Box::new(Open(self.lock()?)))
    }
}

/// The simulated TPM while one agent round has it open.
struct Open<'a>(MutexGuard<'a, SimTpm>);

/// A [`SimError`] as the agent's TPM error; `what` names the operation.
fn sim_error(what: &'static str) -> impl Fn(SimError) -> TpmError {
    move |e| match e {
        SimError::InvalidPcr { pcr } => TpmError::InvalidPcr {
            pcr,
            count: u32::from(PCR_COUNT),
        },
        SimError::NonceTooLong { len, max } => TpmError::NonceTooLong { len, max },
        other => TpmError::Backend {
            what,
            source: Box::new(other),
        },
    }
}

impl Open<'_> {
    fn check_ak(&self, ak: &AkBlobs) -> Result<(), TpmError> {
        if ak.public == self.0.ak_public() {
            Ok(())
        } else {
            Err(TpmError::AkMismatch(
                "the saved AK is not this simulated TPM's",
            ))
        }
    }
}

impl AgentTpm for Open<'_> {
    fn load_or_create_identity(
        &mut self,
        saved_ak: Option<&AkBlobs>,
    ) -> Result<(TpmIdentity, AkBlobs), TpmError> {
        if let Some(saved) = saved_ak {
            self.check_ak(saved)?;
        }
        let identity = TpmIdentity {
            ek_public: self.0.ek_public(),
            ek_certificate: None,
            ak_public: self.0.ak_public(),
            ak_name: self.0.ak_name(),
        };
        let blobs = AkBlobs {
            private: Vec::new(),
            public: identity.ak_public.clone(),
        };
        Ok((identity, blobs))
    }

    fn quote(&mut self, ak: &AkBlobs, nonce: &[u8], pcrs: &[u8]) -> Result<Quote, TpmError> {
        self.check_ak(ak)?;
        let q = self
            .0
            .quote(nonce, pcrs)
            .map_err(sim_error("TPM2_Quote on the simulated TPM"))?;
        Ok(Quote {
            attest: q.attest,
            signature: q.signature,
            pcrs: q.pcrs,
        })
    }

    fn pcr_extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        self.0
            .pcr_extend(pcr, digest)
            .map_err(sim_error("TPM2_PCR_Extend on the simulated TPM"))
    }

    fn pcr_read(&mut self, pcrs: &[u8]) -> Result<Vec<(u8, [u8; 32])>, TpmError> {
        let mut indices = pcrs.to_vec();
        indices.sort_unstable();
        indices.dedup();
        indices
            .into_iter()
            .map(|i| {
                self.0
                    .pcr(i)
                    .map(|v| (i, v))
                    .map_err(sim_error("TPM2_PCR_Read on the simulated TPM"))
            })
            .collect()
    }

    fn clock_info(&mut self) -> Result<ClockInfo, TpmError> {
        let c = self.0.clock_info();
        Ok(ClockInfo {
            clock: c.clock,
            reset_count: c.reset_count,
            restart_count: c.restart_count,
            safe: c.safe,
        })
    }

    fn activate_credential(
        &mut self,
        _ak: &AkBlobs,
        _id_object: &[u8],
        _encrypted_secret: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, TpmError> {
        Err(TpmError::Backend {
            what: "TPM2_ActivateCredential",
            source: "a simulated TPM cannot activate credentials".into(),
        })
    }

    /// A simulated TPM says so in the inventory: manufacturer `SIM`, firmware `0.0`.
    fn tpm_info(&mut self) -> Result<TpmInfo, TpmError> {
        Ok(TpmInfo {
            manufacturer: "SIM".to_owned(),
            firmware_version: "0.0".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use vouch_protocol::tpm::{self, PcrValues, TpmPublic};

    use super::*;

    #[test]
    fn quotes_through_the_agent_trait_verify_and_refuse_another_tpms_ak() {
        let connector = SimConnector::new(SimTpm::from_seed([4; 32]));
        let mut open = connector.open().unwrap();
        let (identity, blobs) = open.load_or_create_identity(None).unwrap();
        open.pcr_extend(14, &[7; 32]).unwrap();
        let quote = open.quote(&blobs, &[1; 32], &[14, 0, 14]).unwrap();
        assert_eq!(
            quote.pcrs.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [0, 14]
        );
        assert_eq!(open.pcr_read(&[14]).unwrap(), vec![quote.pcrs[1]]);
        let mut values = PcrValues::new();
        for (i, v) in &quote.pcrs {
            values
                .insert(vouch_protocol::digest::HashAlg::Sha256, *i, v.to_vec())
                .unwrap();
        }
        let ak = TpmPublic::parse(&identity.ak_public).unwrap();
        tpm::verify_quote(&ak, &quote.attest, &quote.signature, &[1; 32], &values).unwrap();

        let stranger = AkBlobs {
            private: Vec::new(),
            public: SimTpm::from_seed([5; 32]).ak_public(),
        };
        assert!(matches!(
            open.quote(&stranger, &[1; 32], &[0]),
            Err(TpmError::AkMismatch(_))
        ));
        assert!(matches!(
            open.load_or_create_identity(Some(&stranger)),
            Err(TpmError::AkMismatch(_))
        ));
        assert!(matches!(
            open.pcr_extend(PCR_COUNT, &[0; 32]),
            Err(TpmError::InvalidPcr { .. })
        ));
    }

    #[test]
    fn an_open_round_holds_the_tpm_until_it_is_dropped() {
        let connector = SimConnector::new(SimTpm::from_seed([4; 32]));
        let open = connector.open().unwrap();
        assert!(connector.tpm.try_lock().is_err());
        drop(open);
        connector.with(|tpm| tpm.reboot()).unwrap();
    }
}
