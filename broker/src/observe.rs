//! What the broker tells the simulator of its own state, for checkers that judge it against
//! what the clients saw (the security checker needs to know which point of the metadata log
//! each broker had applied when it answered a client). [`emit`] compiles to nothing in a normal
//! build; under `--cfg madsim` it hands the value to a per-thread hook the simulator installs
//! (each simulated run has a thread of its own). The value is any type: the layer that owns
//! the state defines it, and the simulator downcasts.
//!
//! Invariant: observing never changes behaviour (no branch depends on a hook), and in a
//! normal build nothing is made to be observed: `make` is never called.

/// Whether anything can observe: only `--cfg madsim` builds have a hook. Callers that gather
/// what they will emit test this first, so a normal build gathers nothing.
pub const ON: bool = cfg!(madsim);

/// Hand what `make` makes to the simulator's hook (nothing in a normal build).
#[inline(always)]
pub fn emit<T: std::any::Any>(make: impl FnOnce() -> T) {
    #[cfg(madsim)]
    HOOK.with(|h| {
        if let Some(hook) = h.borrow().as_ref() {
            hook(&make());
        }
    });
    #[cfg(not(madsim))]
    let _ = make;
}

#[cfg(madsim)]
type Hook = Box<dyn Fn(&dyn std::any::Any)>;

#[cfg(madsim)]
thread_local! {
    static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Install the function that receives everything emitted on this thread from now on.
#[cfg(madsim)]
pub fn set_hook(hook: impl Fn(&dyn std::any::Any) + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
}

#[cfg(madsim)]
pub fn clear_hook() {
    HOOK.with(|h| *h.borrow_mut() = None);
}
