//! The crypto provider TLS is built with. In production, rustls' `ring` provider as it is: its
//! randomness (the handshake's randoms, session ids, every ephemeral key) comes from the
//! operating system. Under `--cfg madsim` the same ciphers and signature checks, but with every
//! draw of a handshake from the node's seeded generator ([`SecureRandom`]), so that a seed
//! replays a TLS connection bit for bit: ring's own generator reads the kernel directly (the
//! `getrandom` system call, which madsim cannot see), so there its key exchange is replaced by
//! an X25519 (`x25519-dalek`) whose secret is drawn from the seed. Signing keys stay ring's: a
//! simulation's certificates are Ed25519, whose signatures draw nothing (an ECDSA key would
//! draw its nonce from the kernel and make runs differ).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use super::random::SecureRandom;

/// The provider every TLS configuration of this broker (or simulated client) is built with.
pub fn provider(random: &SecureRandom) -> Arc<CryptoProvider> {
    #[cfg(not(madsim))]
    {
        let _ = random;
        Arc::new(rustls::crypto::ring::default_provider())
    }
    #[cfg(madsim)]
    {
        seeded::provider(random)
    }
}

#[cfg(madsim)]
mod seeded {
    use std::sync::Arc;

    use rustls::crypto::{
        ActiveKeyExchange, CryptoProvider, GetRandomFailed, SharedSecret, SupportedKxGroup,
    };
    use rustls::{Error, NamedGroup, PeerMisbehaved};

    use super::SecureRandom;

    /// rustls wants `'static` parts: each provider leaks its two (a few bytes, once per TLS
    /// configuration built — at a node's start and when its files change).
    pub(super) fn provider(random: &SecureRandom) -> Arc<CryptoProvider> {
        let random: &'static Seeded = Box::leak(Box::new(Seeded(random.clone())));
        let x25519: &'static SeededX25519 = Box::leak(Box::new(SeededX25519(random.0.clone())));
        Arc::new(CryptoProvider {
            kx_groups: vec![x25519],
            secure_random: random,
            ..rustls::crypto::ring::default_provider()
        })
    }

    #[derive(Debug)]
    struct Seeded(SecureRandom);

    impl rustls::crypto::SecureRandom for Seeded {
        fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
            self.0.fill(buf);
            Ok(())
        }
    }

    #[derive(Debug)]
    struct SeededX25519(SecureRandom);

    impl SupportedKxGroup for SeededX25519 {
        fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
            let mut seed = [0u8; 32];
            self.0.fill(&mut seed);
            let secret = x25519_dalek::StaticSecret::from(seed);
            let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
            Ok(Box::new(Exchange { secret, public }))
        }

        fn name(&self) -> NamedGroup {
            NamedGroup::X25519
        }
    }

    struct Exchange {
        secret: x25519_dalek::StaticSecret,
        public: [u8; 32],
    }

    impl ActiveKeyExchange for Exchange {
        fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
            let peer: [u8; 32] = peer
                .try_into()
                .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
            let shared = self
                .secret
                .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
            if !shared.was_contributory() {
                return Err(PeerMisbehaved::InvalidKeyShare.into());
            }
            Ok(SharedSecret::from(&shared.as_bytes()[..]))
        }

        fn pub_key(&self) -> &[u8] {
            &self.public
        }

        fn group(&self) -> NamedGroup {
            NamedGroup::X25519
        }
    }
}
