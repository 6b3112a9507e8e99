//! PCR selections and reads for the SHA-256 bank. Selections are handled as
//! 32-bit masks (bit n = PCR n) and converted to tss-esapi's
//! [`PcrSelectionList`] only at the TPM boundary. TPM2_PCR_Read returns at
//! most eight digests per call, so [`read_pcrs`] loops over what the TPM has
//! not yet returned, refusing responses that would make it loop forever.

use sha2::{Digest as _, Sha256};
use tss_esapi::{
    Context,
    interface_types::algorithm::HashingAlgorithm,
    structures::{PcrSelectSize, PcrSelectionList, PcrSelectionListBuilder, PcrSlot},
};

use super::TpmError;

/// SHA-256 over the PCR values in order: a quote's pcrDigest for an AK whose
/// name algorithm is SHA-256.
pub(super) fn pcr_digest(values: &[(u8, [u8; 32])]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (_, value) in values {
        hasher.update(value);
    }
    hasher.finalize().into()
}

/// The PCR indices set in `mask`, ascending.
fn indices(mask: u32) -> impl Iterator<Item = u8> {
    (0u8..32).filter(move |i| mask & (1 << i) != 0)
}

/// A SHA-256 selection of the PCRs in `mask`; the empty list when `mask` is 0.
pub(super) fn pcr_selection(mask: u32, size: PcrSelectSize) -> tss_esapi::Result<PcrSelectionList> {
    if mask == 0 {
        return Ok(PcrSelectionList::default());
    }
    let slots = indices(mask)
        .map(|i| PcrSlot::try_from(1u32 << i))
        .collect::<tss_esapi::Result<Vec<_>>>()?;
    PcrSelectionListBuilder::new()
        .with_size_of_select(size)
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
}

/// The SHA-256 PCRs selected in a TPM-returned selection list.
pub(super) fn selection_mask(list: &PcrSelectionList) -> Result<u32, TpmError> {
    let mut mask = 0u32;
    for selection in list.get_selections() {
        let slots = selection.selected();
        if slots.is_empty() {
            continue;
        }
        if selection.hashing_algorithm() != HashingAlgorithm::Sha256 {
            return Err(TpmError::UnexpectedResponse(
                "selection of another PCR bank",
            ));
        }
        mask = slots.into_iter().fold(mask, |m, slot| m | u32::from(slot));
    }
    Ok(mask)
}

/// Reads the SHA-256 PCRs in `mask`, ascending, in as many TPM2_PCR_Read
/// calls as needed. Fails rather than loops if the TPM stops making progress.
pub(super) fn read_pcrs(
    ctx: &mut Context,
    mask: u32,
    size: PcrSelectSize,
) -> Result<Vec<(u8, [u8; 32])>, TpmError> {
    let mut values = Vec::with_capacity(mask.count_ones() as usize);
    let mut remaining = mask;
    while remaining != 0 {
        let selection = pcr_selection(remaining, size).map_err(TpmError::PcrRead)?;
        let (_update_counter, read, digests) = ctx
            .execute_without_session(|ctx| ctx.pcr_read(selection))
            .map_err(TpmError::PcrRead)?;
        let got = selection_mask(&read)?;
        if got == 0 || got & !remaining != 0 {
            return Err(TpmError::UnexpectedResponse(
                "TPM2_PCR_Read returned no or unrequested PCRs",
            ));
        }
        if digests.value().len() != got.count_ones() as usize {
            return Err(TpmError::UnexpectedResponse(
                "TPM2_PCR_Read returned a digest count unlike its selection",
            ));
        }
        for (pcr, digest) in indices(got).zip(digests.value()) {
            let value = <[u8; 32]>::try_from(digest.value())
                .map_err(|_| TpmError::UnexpectedResponse("SHA-256 PCR value is not 32 bytes"))?;
            values.push((pcr, value));
        }
        remaining &= !got;
    }
    values.sort_unstable_by_key(|&(pcr, _)| pcr);
    Ok(values)
}
