//! Running a host on a real Linux TAP device, in real time.

use std::fmt;
use std::io;
use std::os::unix::io::AsRawFd;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{self, Medium, TunTapInterface};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

/// Why a TAP device could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TapError {
    /// `/dev/net/tun` does not exist: the kernel has no TUN/TAP support here.
    NoTunDevice,
    /// Opening or creating the device was refused: it needs `CAP_NET_ADMIN`
    /// (run as root), or a device created beforehand with
    /// `ip tuntap add NAME mode tap user $USER`.
    PermissionDenied(String),
    /// Any other I/O error, with the device name.
    Io(String, io::Error),
}

impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTunDevice => write!(
                f,
                "/dev/net/tun is missing: no TUN/TAP support on this machine"
            ),
            Self::PermissionDenied(name) => write!(
                f,
                "not allowed to open TAP device {name}: run as root (CAP_NET_ADMIN) or create it first with \
                 `ip tuntap add {name} mode tap user $USER`"
            ),
            Self::Io(name, e) => write!(f, "TAP device {name}: {e}"),
        }
    }
}

impl std::error::Error for TapError {}

/// A host on a TAP device: an Ethernet interface with one address.
pub struct TapHost {
    /// The interface.
    pub iface: Interface,
    /// Its sockets.
    pub sockets: SocketSet<'static>,
    device: TunTapInterface,
}

impl TapHost {
    /// Opens (or creates) TAP device `name` and configures `addr` on it, with
    /// a locally administered MAC and smoltcp's ISN seed derived from `seed`.
    ///
    /// This function returns a [`TapError`] saying what is missing.
    pub fn open(
        name: &str,
        addr: IpCidr,
        gateway: Option<Ipv4Address>,
        seed: u64,
    ) -> Result<Self, TapError> {
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err(TapError::NoTunDevice);
        }
        let mut device =
            TunTapInterface::new(name, Medium::Ethernet).map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => TapError::PermissionDenied(name.to_string()),
                _ if e.raw_os_error() == Some(1) => TapError::PermissionDenied(name.to_string()),
                _ => TapError::Io(name.to_string(), e),
            })?;
        let b = seed.to_be_bytes();
        // Locally administered, unicast: 02:xx:xx:xx:xx:xx.
        let mac = EthernetAddress([0x02, b[3], b[4], b[5], b[6], b[7]]);
        let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        cfg.random_seed = seed | 1;
        let mut iface = Interface::new(cfg, &mut device, Instant::now());
        iface.update_ip_addrs(|a| {
            let _ = a.push(addr);
        });
        if let Some(gw) = gateway {
            iface.routes_mut().add_default_ipv4_route(gw).map_err(|_| {
                TapError::Io(name.to_string(), io::Error::other("routing table full"))
            })?;
        }
        Ok(Self {
            iface,
            sockets: SocketSet::new(vec![]),
            device,
        })
    }

    /// As [`TapHost::poll_ingress_single`], showing `seen` the received
    /// frame (Ethernet) before the interface processes it: what a socket's
    /// state cannot tell afterwards (an RST and the ACK of our FIN both take
    /// LAST-ACK to CLOSED and clear the socket's endpoints).
    pub fn poll_ingress_single_with(&mut self, now: Instant, seen: impl FnMut(&[u8])) -> bool {
        let mut device = Inspect {
            inner: &mut self.device,
            seen,
        };
        !matches!(
            self.iface
                .poll_ingress_single(now, &mut device, &mut self.sockets),
            smoltcp::iface::PollIngressSingleResult::None
        )
    }

    /// Processes at most one received packet; says whether there was one.
    /// A caller that must see each segment's effect on a socket before the
    /// next (data followed at once by an RST, which empties smoltcp's
    /// receive buffer) reads its sockets between calls.
    pub fn poll_ingress_single(&mut self, now: Instant) -> bool {
        !matches!(
            self.iface
                .poll_ingress_single(now, &mut self.device, &mut self.sockets),
            smoltcp::iface::PollIngressSingleResult::None
        )
    }

    /// Sends what the sockets have queued.
    pub fn poll_egress(&mut self, now: Instant) {
        let _ = self
            .iface
            .poll_egress(now, &mut self.device, &mut self.sockets);
    }

    /// The device's file descriptor, to wait on with [`phy::wait`] without
    /// holding the host (a host shared between threads waits outside its
    /// lock).
    pub fn raw_fd(&self) -> std::os::unix::io::RawFd {
        self.device.as_raw_fd()
    }

    /// Runs the host in real time: polls the interface, calls `app`, and
    /// sleeps on the device until the earlier of the interface's deadline and
    /// the one `app` returns. `app` returns `None` to stop.
    ///
    /// This function returns `Err` if waiting on the device fails.
    pub fn run(
        &mut self,
        mut app: impl FnMut(Instant, &mut Interface, &mut SocketSet<'static>) -> Option<Option<Instant>>,
    ) -> io::Result<()> {
        let fd = self.device.as_raw_fd();
        loop {
            let now = Instant::now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let Some(app_at) = app(now, &mut self.iface, &mut self.sockets) else {
                return Ok(());
            };
            // Send what the application queued before sleeping.
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let iface_delay = self.iface.poll_delay(now, &self.sockets);
            let app_delay = app_at.map(|t| if t > now { t - now } else { Duration::ZERO });
            let delay = match (iface_delay, app_delay) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // Never sleep unboundedly: a stop condition may depend on time.
            let delay = Some(
                delay
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100)),
            );
            phy::wait(fd, delay)?;
        }
    }
}

/// A device that shows each received frame to `seen` as it is consumed.
struct Inspect<'d, F: FnMut(&[u8])> {
    inner: &'d mut TunTapInterface,
    seen: F,
}

/// [`Inspect`]'s receive token.
struct InspectRx<'s, T, F> {
    inner: T,
    seen: &'s mut F,
}

impl<T: phy::RxToken, F: FnMut(&[u8])> phy::RxToken for InspectRx<'_, T, F> {
    fn consume<R, G>(self, f: G) -> R
    where
        G: FnOnce(&[u8]) -> R,
    {
        let seen = self.seen;
        self.inner.consume(|frame| {
            seen(frame);
            f(frame)
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

impl<F: FnMut(&[u8])> phy::Device for Inspect<'_, F> {
    type RxToken<'a>
        = InspectRx<'a, <TunTapInterface as phy::Device>::RxToken<'a>, F>
    where
        Self: 'a;
    type TxToken<'a>
        = <TunTapInterface as phy::Device>::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            InspectRx {
                inner: rx,
                seen: &mut self.seen,
            },
            tx,
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> phy::DeviceCapabilities {
        self.inner.capabilities()
    }
}
