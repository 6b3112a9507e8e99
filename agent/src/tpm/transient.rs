//! Scoped ownership of TPM transient objects. A reference TPM (and swtpm) has
//! no resource manager and as few as three transient object slots, so every
//! object the agent creates or loads must be flushed when the operation that
//! needed it ends, whether that operation succeeded, failed or panicked.
//! [`Transients`] borrows the [`Context`] for the duration of one operation,
//! records each handle as it comes into existence, and flushes whatever is
//! still recorded when it is dropped. The success path calls
//! [`Transients::finish`] instead, which flushes the same way but reports a
//! failed flush, because a leaked slot would otherwise surface later as an
//! unrelated `TPM_RC_OBJECT_MEMORY` (0x902).

use tss_esapi::{Context, handles::ObjectHandle};

/// The transient handles loaded during one operation, flushed on drop.
#[derive(Debug)]
pub(super) struct Transients<'a> {
    ctx: &'a mut Context,
    live: Vec<ObjectHandle>,
}

impl<'a> Transients<'a> {
    pub(super) fn new(ctx: &'a mut Context) -> Self {
        Self {
            ctx,
            live: Vec::with_capacity(2),
        }
    }

    /// The context, for issuing commands while the scope is alive.
    pub(super) fn ctx(&mut self) -> &mut Context {
        self.ctx
    }

    /// Records `handle` so that it is flushed when the scope ends. Call this
    /// immediately after the command that created the object returns.
    pub(super) fn track<H: Into<ObjectHandle> + Copy>(&mut self, handle: H) -> H {
        self.live.push(handle.into());
        handle
    }

    /// Flushes one recorded handle before the scope ends (for example the EK
    /// once the AK under it is loaded), freeing its slot early.
    pub(super) fn flush<H: Into<ObjectHandle>>(&mut self, handle: H) -> tss_esapi::Result<()> {
        let handle = handle.into();
        self.live.retain(|h| *h != handle);
        self.ctx.flush_context(handle)
    }

    /// Ends the scope on the success path: flushes every handle still
    /// recorded, newest first, and returns the first flush error, if any.
    /// Every handle is attempted even if an earlier one fails.
    pub(super) fn finish(mut self) -> tss_esapi::Result<()> {
        let mut first_error = None;
        while let Some(handle) = self.live.pop() {
            if let Err(e) = self.ctx.flush_context(handle) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Transients<'_> {
    fn drop(&mut self) {
        // Error path: the operation's own error is what the caller sees; a
        // flush failure here has no better place to go. The handle stays in
        // tss-esapi's handle manager, which retries when the Context drops.
        while let Some(handle) = self.live.pop() {
            let _ = self.ctx.flush_context(handle);
        }
    }
}
