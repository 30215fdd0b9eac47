//! Where the endpoint's TCP sockets come from and where they go: the one
//! place a socket enters or leaves the application's `SocketSet` on the
//! endpoint's behalf.
//!
//! With [`TcpBuffers::Heap`] every socket is made with
//! `Config::tcp_rx_buffer` + `Config::tcp_tx_buffer` bytes of heap when a
//! listener arms or a connection starts, and removed (its buffers freed) when
//! the connection no longer needs it. With [`TcpBuffers::Provided`] the
//! endpoint owns no buffer: the application hands it sockets over its own
//! storage ([`Endpoint::add_socket`](super::Endpoint::add_socket)), and a
//! released socket is *parked* in the set, closed, for the next connection.
//! smoltcp gives a removed socket's buffers back to nobody (a `tcp::Socket`
//! has no way to return them), so recycling in place is how the same
//! storage serves connection after connection.

use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use super::smol_duration;
use crate::config::{Config, TcpBuffers};

/// The port a parked socket listens on for no time at all: see
/// [`Sockets::park`]. Any non-zero port does; the socket is closed again
/// before the interface could see it.
const PARKING_PORT: u16 = 9;

/// The endpoint's sockets outside any connection.
#[derive(Debug)]
pub(super) struct Sockets {
    mode: TcpBuffers,
    /// Provided sockets parked in the set, closed, ready for use.
    parked: Vec<SocketHandle>,
    /// Provided sockets in all (parked or in use).
    provided: usize,
}

impl Sockets {
    pub(super) fn new(mode: TcpBuffers) -> Self {
        Self {
            mode,
            parked: Vec::new(),
            provided: 0,
        }
    }

    pub(super) fn mode(&self) -> TcpBuffers {
        self.mode
    }

    /// Provided sockets ready for use.
    pub(super) fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Provided sockets, parked or in use.
    pub(super) fn provided(&self) -> usize {
        self.provided
    }

    /// Adopts an application-provided socket: closed, so that it sends
    /// nothing until the endpoint uses it.
    pub(super) fn adopt<'a>(
        &mut self,
        sockets: &mut SocketSet<'a>,
        mut socket: tcp::Socket<'a>,
    ) -> SocketHandle {
        Self::close_silently(&mut socket);
        let h = sockets.add(socket);
        self.parked.push(h);
        self.provided += 1;
        h
    }

    /// A closed socket in the set, set up from `config`, for a listener or
    /// an outgoing connection: `None` if every provided socket is in use.
    pub(super) fn take(
        &mut self,
        config: &Config,
        sockets: &mut SocketSet<'_>,
    ) -> Option<SocketHandle> {
        let h = match self.mode {
            TcpBuffers::Heap => {
                let rx = tcp::SocketBuffer::new(alloc::vec![0u8; config.tcp_rx_buffer]);
                let tx = tcp::SocketBuffer::new(alloc::vec![0u8; config.tcp_tx_buffer]);
                sockets.add(tcp::Socket::new(rx, tx))
            }
            TcpBuffers::Provided => self.parked.pop()?,
        };
        let s = sockets.get_mut::<tcp::Socket>(h);
        // smoltcp has no default timeouts: bound every state, and keep-alive
        // below the timeout so that idle-but-healthy connections survive it.
        // Set on every use: a parked socket keeps its last user's settings
        // (smoltcp's `reset` leaves them), the SYN-ACK pause included.
        s.set_timeout(Some(smol_duration(config.give_up_after())));
        s.set_keep_alive(Some(smol_duration(config.tcp_keep_alive)));
        s.set_ack_delay(config.tcp_ack_delay.map(smol_duration));
        s.set_nagle_enabled(config.tcp_nagle);
        // A fresh congestion controller: its state is the last path's.
        s.set_congestion_control(s.congestion_control());
        #[cfg(feature = "conditional-accept")]
        s.pause_synack(false);
        Some(h)
    }

    /// Lets go of a socket the endpoint no longer needs, silently (what
    /// `SocketSet::remove` does: the peer is not told; every caller has
    /// either finished the TCP exchange, sent its RST, or chosen silence).
    pub(super) fn release(&mut self, sockets: &mut SocketSet<'_>, h: SocketHandle) {
        match self.mode {
            TcpBuffers::Heap => {
                sockets.remove(h);
            }
            TcpBuffers::Provided => {
                Self::close_silently(sockets.get_mut::<tcp::Socket>(h));
                self.parked.push(h);
            }
        }
    }

    /// Closes a socket without a segment to the peer and forgets its
    /// 4-tuple, as removing it from the set would. smoltcp has no public
    /// silent reset: `abort` alone leaves the 4-tuple and sends a RST at the
    /// next poll, but `listen` on a socket that is not open (CLOSED or
    /// TIME-WAIT) runs its private `reset`, which forgets the peer, clears
    /// both buffers, timers and sequence state; the second `abort` then
    /// closes the listener, which has no peer to send to.
    fn close_silently(socket: &mut tcp::Socket<'_>) {
        socket.abort();
        // Cannot fail: the socket is not open and the port is not zero.
        let _ = socket.listen(PARKING_PORT);
        socket.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket<'a>(rx: &'a mut [u8], tx: &'a mut [u8]) -> tcp::Socket<'a> {
        tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx))
    }

    #[test]
    fn provided_sockets_are_taken_until_none_is_parked_and_come_back_on_release() {
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        let (mut c, mut d) = ([0u8; 64], [0u8; 64]);
        let mut set = SocketSet::new(alloc::vec![]);
        let mut pool = Sockets::new(TcpBuffers::Provided);
        pool.adopt(&mut set, socket(&mut a, &mut b));
        pool.adopt(&mut set, socket(&mut c, &mut d));
        let config = Config::new(1);
        let first = pool.take(&config, &mut set).unwrap();
        let second = pool.take(&config, &mut set).unwrap();
        assert_ne!(first, second);
        assert_eq!(
            pool.take(&config, &mut set),
            None,
            "two provided, two taken"
        );
        pool.release(&mut set, first);
        assert_eq!(pool.take(&config, &mut set), Some(first));
        assert_eq!((pool.provided(), set.iter().count()), (2, 2));
    }

    #[test]
    fn a_released_listener_is_closed_and_can_be_used_again() {
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        let mut set = SocketSet::new(alloc::vec![]);
        let mut pool = Sockets::new(TcpBuffers::Provided);
        pool.adopt(&mut set, socket(&mut a, &mut b));
        let h = pool.take(&Config::new(1), &mut set).unwrap();
        set.get_mut::<tcp::Socket>(h).listen(7).unwrap();
        pool.release(&mut set, h);
        let s = set.get_mut::<tcp::Socket>(h);
        // Closed: a SYN to port 7 finds no listener in it any more.
        assert_eq!(s.state(), tcp::State::Closed);
        assert_eq!(s.remote_endpoint(), None);
        assert_eq!(s.listen(8), Ok(()));
    }

    #[test]
    fn heap_sockets_are_removed_on_release() {
        let mut set = SocketSet::new(alloc::vec![]);
        let mut pool = Sockets::new(TcpBuffers::Heap);
        let config = Config::new(1);
        let h = pool.take(&config, &mut set).unwrap();
        assert_eq!(
            set.get::<tcp::Socket>(h).recv_capacity(),
            config.tcp_rx_buffer
        );
        pool.release(&mut set, h);
        assert_eq!(set.iter().count(), 0);
    }
}
