use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a peer.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection for T {}

/// A bound listening socket.
#[async_trait]
pub trait Listener: Send + Sync + 'static {
    /// Wait for the next connection.
    async fn accept(&self) -> io::Result<(Box<dyn Connection>, SocketAddr)>;
    /// The address actually bound (useful with port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Listening and connecting.
#[async_trait]
pub trait Net: Send + Sync + 'static {
    async fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>>;
    async fn connect(&self, addr: SocketAddr) -> io::Result<Box<dyn Connection>>;
}

/// TCP through tokio's `net` module (the real network in a normal build).
#[derive(Debug, Default, Clone)]
pub struct TcpNet;

struct TcpListener(tokio::net::TcpListener);

#[async_trait]
impl Listener for TcpListener {
    async fn accept(&self) -> io::Result<(Box<dyn Connection>, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        // Kafka requests are small and latency-bound: never wait for Nagle.
        stream.set_nodelay(true)?;
        Ok((Box::new(stream), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[async_trait]
impl Net for TcpNet {
    async fn listen(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(TcpListener(
            tokio::net::TcpListener::bind(addr).await?,
        )))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<Box<dyn Connection>> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}
