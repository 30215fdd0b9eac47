//! Storage for provided TCP sockets ([`TcpBuffers::Provided`]), in the
//! style of embassy-net's `StackResources<N>`: one value whose size is known
//! at compile time, placed where the application wants it (a `static`, a
//! `StaticCell`, a task's frame).
//!
//! [`TcpBuffers::Provided`]: crate::TcpBuffers::Provided

use smoltcp::socket::tcp;

/// Receive and send buffers for `N` TCP sockets of `RX` and `TX` bytes.
///
/// ```
/// # use bookend_smoltcp::{Config, Endpoint, TcpBuffers, TcpStorage};
/// # use bookend_smoltcp::smoltcp::iface::SocketSet;
/// // Four connections (listening sockets included) of 1 KiB each way.
/// let storage: &'static mut TcpStorage<4, 1024, 1024> = Box::leak(Box::new(TcpStorage::new()));
/// let mut sockets = SocketSet::new(vec![]);
/// let mut config = Config::new(7);
/// config.tcp_buffers = TcpBuffers::Provided;
/// let mut endpoint = Endpoint::new(config).unwrap();
/// for socket in storage.sockets() {
///     endpoint.add_socket(&mut sockets, socket).unwrap();
/// }
/// assert_eq!(endpoint.free_socket_count(), 4);
/// ```
#[derive(Debug)]
pub struct TcpStorage<const N: usize, const RX: usize, const TX: usize> {
    rx: [[u8; RX]; N],
    tx: [[u8; TX]; N],
}

impl<const N: usize, const RX: usize, const TX: usize> TcpStorage<N, RX, TX> {
    /// Bytes of buffer per socket, both directions.
    pub const BYTES_PER_SOCKET: usize = RX + TX;

    /// Zeroed buffers; `const`, so that it can initialise a `static`.
    pub const fn new() -> Self {
        Self {
            rx: [[0; RX]; N],
            tx: [[0; TX]; N],
        }
    }

    /// The `N` sockets over these buffers, for
    /// [`Endpoint::add_socket`](crate::Endpoint::add_socket). They borrow
    /// the storage for as long as they live.
    pub fn sockets(&mut self) -> impl Iterator<Item = tcp::Socket<'_>> {
        self.rx.iter_mut().zip(self.tx.iter_mut()).map(|(rx, tx)| {
            tcp::Socket::new(
                tcp::SocketBuffer::new(&mut rx[..]),
                tcp::SocketBuffer::new(&mut tx[..]),
            )
        })
    }
}

impl<const N: usize, const RX: usize, const TX: usize> Default for TcpStorage<N, RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}
