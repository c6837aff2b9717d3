//! A commit round's waiters, answered once each: by the round as each write is durable, or
//! all at once when the round fails or passes its deadline.

/// A commit round's waiters, each answered once: by the round, or all at once by its deadline.
/// (A std mutex, taken for a few instructions and never across an await.)
pub(super) struct Board<T, E>(crate::sync::Mutex<Slots<T, E>>);

type Slots<T, E> = Vec<Option<super::Reply<Result<T, E>>>>;

impl<T, E: Clone> Board<T, E> {
    pub(super) fn new(waiters: Slots<T, E>) -> Self {
        Board(crate::sync::Mutex::new("storage.pipeline.board", waiters))
    }

    pub(super) fn answer(&self, slot: usize, result: Result<T, E>) {
        let reply = self.lock().get_mut(slot).and_then(Option::take);
        if let Some(r) = reply {
            let _ = r.send(result);
        }
    }

    /// Answer every waiter not answered yet.
    pub(super) fn answer_all(&self, err: &E) {
        let replies: Vec<_> = self.lock().iter_mut().map(Option::take).collect();
        for r in replies.into_iter().flatten() {
            let _ = r.send(Err(err.clone()));
        }
    }

    #[track_caller]
    fn lock(&self) -> crate::sync::MutexGuard<'_, Slots<T, E>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
