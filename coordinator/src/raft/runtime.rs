//! openraft's async runtime for the coordinator: tokio, except that the random numbers openraft
//! draws (its only randomness: the election timeout) come from a generator the simulation can seed.
//!
//! In production nothing is seeded and every draw comes from the OS (`StdRng::from_entropy`), as
//! with openraft's stock `TokioRuntime`. The simulation (sim/, DESIGN §7) calls [`seed_rng`] on the
//! thread that runs its world; from then on each draw is taken from that seeded generator, so the
//! same seed elects the same leaders at the same simulated times.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    /// The seeded generator of this thread, if the simulation set one.
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes every later openraft draw on this thread come from `seed` (simulation only).
pub fn seed_rng(seed: u64) {
    SEEDED.with(|cell| *cell.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Forgets the seed of this thread (the next simulation run seeds again).
pub fn unseed_rng() {
    SEEDED.with(|cell| *cell.borrow_mut() = None);
}

/// A generator for one openraft draw: split off the thread's seeded generator, or from the OS.
fn draw_rng() -> StdRng {
    SEEDED.with(|cell| match cell.borrow_mut().as_mut() {
        Some(seeded) => StdRng::seed_from_u64(seeded.next_u64()),
        None => StdRng::from_entropy(),
    })
}

/// tokio for everything, [`draw_rng`] for randomness (declared in `types.rs`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KvsRuntime;

impl AsyncRuntime for KvsRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;
    type OneshotSender<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <TokioRuntime as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        draw_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        TokioRuntime::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_seeded_thread_draws_the_same_sequence_again() {
        let draws = || {
            (0..4)
                .map(|_| KvsRuntime::thread_rng().gen_range(1000..2000u64))
                .collect::<Vec<_>>()
        };
        seed_rng(7);
        let first = draws();
        seed_rng(7);
        let second = draws();
        unseed_rng();
        assert_eq!(first, second);
        seed_rng(8);
        let other = draws();
        unseed_rng();
        assert_ne!(first, other, "another seed draws other timeouts");
    }
}
