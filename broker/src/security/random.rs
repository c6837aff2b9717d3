//! Randomness for security: SCRAM salts and server nonces, the secret behind the decoy
//! credentials of unknown users, and (under simulation) TLS's. In production it comes from the
//! operating system (rustls' `ring` provider's generator): the node's seeded generator
//! (`Env::rng`, seeded from the wall clock or a configured `seed`) would make a server's nonces
//! and salts guessable. Under `--cfg madsim` it comes from that seeded generator instead, so a
//! seed replays the same exchanges bit for bit.
//!
//! Invariant: nothing in `security`, nor anything that makes salts, nonces or keys, draws from
//! `Env::rng` but through this.

use io_backend::EnvRng;

/// Where security's random bytes come from (cheap to clone).
#[derive(Clone)]
pub struct SecureRandom {
    #[cfg(madsim)]
    rng: EnvRng,
}

impl std::fmt::Debug for SecureRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecureRandom")
    }
}

/// The `ring` provider's generator (the operating system's), taken once.
#[cfg(not(madsim))]
fn system() -> &'static dyn rustls::crypto::SecureRandom {
    static SYSTEM: std::sync::OnceLock<&'static dyn rustls::crypto::SecureRandom> =
        std::sync::OnceLock::new();
    *SYSTEM.get_or_init(|| rustls::crypto::ring::default_provider().secure_random)
}

impl SecureRandom {
    /// The operating system's generator; under simulation, `rng`.
    pub fn new(rng: &EnvRng) -> SecureRandom {
        #[cfg(not(madsim))]
        let _ = rng;
        SecureRandom {
            #[cfg(madsim)]
            rng: rng.clone(),
        }
    }

    pub fn fill(&self, buf: &mut [u8]) {
        #[cfg(madsim)]
        for chunk in buf.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
        #[cfg(not(madsim))]
        system()
            .fill(buf)
            // Without the system's randomness nothing secure can be made: the process ends
            // (invariant 24), as a Kafka broker's would on a failing SecureRandom.
            .expect("the operating system's random generator failed");
    }

    pub fn bytes(&self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.fill(&mut b);
        b
    }

    pub fn next_u64(&self) -> u64 {
        let mut b = [0; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// A value drawn uniformly from `[0, n)` (`n` above 0).
    pub fn below(&self, n: u64) -> u64 {
        // Rejection of the top partial range keeps it uniform.
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_in_range_and_differ() {
        let r = SecureRandom::new(&EnvRng::seeded(1));
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_ne!(r.bytes(16), r.bytes(16));
        let mut odd = [0u8; 13];
        r.fill(&mut odd);
        assert!(odd.iter().any(|b| *b != 0));
    }

    /// Production draws from the system, not the seed: two generators of one seed differ.
    #[cfg(not(madsim))]
    #[test]
    fn a_seed_does_not_make_production_draws_predictable() {
        let a = SecureRandom::new(&EnvRng::seeded(7));
        let b = SecureRandom::new(&EnvRng::seeded(7));
        assert_ne!(a.bytes(32), b.bytes(32));
    }
}
