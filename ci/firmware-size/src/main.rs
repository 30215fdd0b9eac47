//! A minimal firmware with bookend-embassy: the seed scenario's client
//! (connect with caller data, the transaction total as disconnect data, the
//! grand total read back, close) on embassy-net, the embassy executor, a
//! SysTick time driver and a 16 KiB heap, for a Cortex-M4F. `.ci/run`
//! builds it for `thumbv7em-none-eabihf` and reports its flash and RAM
//! (`size` on the ELF), with and without defmt.
//!
//! It is what bookend costs a firmware, not a board port: the network
//! driver is a stand-in that never receives (a real one comes from the HAL:
//! embassy-stm32's Ethernet, a Wi-Fi chip's), so the figures are bookend,
//! embassy-net (smoltcp) and the executor, with no NIC driver in them.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use core::cell::{Cell, RefCell};
use core::task::Context;

#[cfg(not(feature = "raw"))]
use bookend_embassy::{Config, connect};
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_time_queue_utils::Queue;
use embedded_alloc::LlffHeap;
use static_cell::StaticCell;

#[cfg(feature = "defmt")]
use defmt_rtt as _;
use panic_halt as _;

/// The heap bookend-session's queues are allocated from.
#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();
const HEAP_SIZE: usize = 16 * 1024;

/// A network driver that sends into nothing and never receives: the
/// place of the board's own. Whether a packet is there is hidden from the
/// optimiser (`black_box`), so that the receive path is linked as it would
/// be with a real driver.
struct NoNic;

struct Rx;
struct Tx;

impl embassy_net_driver::RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        let mut frame = [0u8; 1514];
        let len = core::hint::black_box(frame.len());
        f(core::hint::black_box(&mut frame[..len]))
    }
}

impl embassy_net_driver::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0u8; 1514];
        f(&mut frame[..len.min(1514)])
    }
}

impl embassy_net_driver::Driver for NoNic {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _: &mut Context<'_>) -> Option<(Rx, Tx)> {
        core::hint::black_box(false).then_some((Rx, Tx))
    }

    fn transmit(&mut self, _: &mut Context<'_>) -> Option<Tx> {
        Some(Tx)
    }

    fn link_state(&mut self, _: &mut Context<'_>) -> embassy_net_driver::LinkState {
        embassy_net_driver::LinkState::Up
    }

    fn capabilities(&self) -> embassy_net_driver::Capabilities {
        let mut c = embassy_net_driver::Capabilities::default();
        c.max_transmission_unit = 1500;
        c
    }

    fn hardware_address(&self) -> embassy_net_driver::HardwareAddress {
        embassy_net_driver::HardwareAddress::Ip
    }
}

/// embassy-time's driver on SysTick at 1 kHz (a HAL provides one on a
/// hardware timer).
struct SysTickTime {
    ticks: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

impl embassy_time_driver::Driver for SysTickTime {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &core::task::Waker) {
        critical_section::with(|cs| {
            let now = self.ticks.borrow(cs).get();
            let mut q = self.queue.borrow_ref_mut(cs);
            q.schedule_wake(at, waker);
            q.next_expiration(now);
        });
    }
}

embassy_time_driver::time_driver_impl!(static TIME: SysTickTime = SysTickTime {
    ticks: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let t = TIME.ticks.borrow(cs).get() + 1;
        TIME.ticks.borrow(cs).set(t);
        TIME.queue.borrow_ref_mut(cs).next_expiration(t);
    });
}

#[embassy_executor::task]
async fn net(mut runner: Runner<'static, NoNic>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    {
        static mut HEAP_MEM: [core::mem::MaybeUninit<u8>; HEAP_SIZE] =
            [core::mem::MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, first thing, with memory nothing else uses
        // (embedded-alloc's documented set-up; a global allocator cannot be
        // given its memory without it).
        #[allow(unsafe_code)]
        unsafe {
            HEAP.init(&raw mut HEAP_MEM as usize, HEAP_SIZE)
        }
    }
    let mut core = cortex_m::Peripherals::take().expect("taken once");
    // 1 kHz from a 16 MHz core clock (the reset clock of most STM32F4s).
    core.SYST
        .set_clock_source(cortex_m::peripheral::syst::SystClkSource::Core);
    core.SYST.set_reload(16_000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_interrupt();
    core.SYST.enable_counter();

    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, 2), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let (stack, runner) =
        embassy_net::new(NoNic, config, RESOURCES.init(StackResources::new()), 0x5eed);
    spawner.spawn(net(runner).expect("one task"));

    static RX: StaticCell<[u8; 1024]> = StaticCell::new();
    static TX: StaticCell<[u8; 1024]> = StaticCell::new();
    let socket = TcpSocket::new(stack, RX.init([0; 1024]), TX.init([0; 1024]));
    let server = (Ipv4Address::new(10, 0, 0, 1), 7050);
    exchange(socket, server).await;
}

/// The seed client with bookend: caller data, (1) the transaction total as
/// disconnect data, (6-7) the grand total, (8) closesocket.
#[cfg(not(feature = "raw"))]
async fn exchange(socket: TcpSocket<'static>, server: (Ipv4Address, u16)) {
    let config = Config::default();
    let Ok((mut conn, _welcome)) =
        connect(socket, server, Some(b"client-1"), config.options(), &config).await
    else {
        return;
    };
    let _ = conn.send_disconnect(Some(&17u64.to_be_bytes())).await;
    let _grand_total = conn.recv_disconnect().await;
    let _ = conn.close().await;
}

/// The baseline (feature `raw`): the same exchange over the bare socket,
/// as an application without bookend writes it (the name, the total, FIN;
/// the grand total until the peer's FIN; the FIN flushed).
#[cfg(feature = "raw")]
async fn exchange(mut socket: TcpSocket<'static>, server: (Ipv4Address, u16)) {
    if socket.connect(server).await.is_err() {
        return;
    }
    let _ = socket.write(b"client-1").await;
    let _ = socket.write(&17u64.to_be_bytes()).await;
    socket.close();
    let mut grand_total = [0u8; 8];
    let mut got = 0;
    while got < grand_total.len() {
        match socket.read(&mut grand_total[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let _ = socket.flush().await;
}
