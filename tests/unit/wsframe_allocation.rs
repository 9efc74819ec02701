//! A frame header that declares a huge length must be refused before anything is
//! allocated for it, and a message must not cost much more memory than its size
//! (STYLE.md: check a length before allocating for it). A counting global allocator
//! measures what this test's thread allocates while the reader works.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use vauchi_relay::wsframe::{FirstMessageReader, Step};

struct Counting;

thread_local! {
    /// Bytes allocated and not yet freed by this thread, and the peak since a reset.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let live = LIVE_BYTES.with(|live| {
        live.set(live.get() + delta);
        live.get()
    });
    PEAK_BYTES.with(|peak| peak.set(peak.get().max(live)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// const-initialised thread-local Cells, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `work` and returns its result and the peak of bytes it had allocated.
fn peak_while<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(start));
    let result = work();
    let peak = PEAK_BYTES.with(Cell::get) - start;
    (result, peak as usize)
}

#[test]
fn declared_huge_lengths_fail_without_allocating_for_them() {
    let max = 1 << 20;
    let lengths: [u64; 3] = [max as u64 + 1, 1 << 40, i64::MAX as u64];
    for length in lengths {
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        let (step, peak) = peak_while(|| {
            let mut reader = FirstMessageReader::new(max);
            reader.feed(&header);
            reader.poll()
        });
        assert_eq!(
            step,
            Step::Fail {
                code: 1009,
                reason: "message too big"
            }
        );
        assert!(peak < 1024, "peak {peak} bytes for a {length}-byte claim");
    }
}

#[test]
fn an_accepted_header_alone_reserves_nothing_for_its_payload() {
    // A header that passes the check must not make the reader reserve the declared
    // length before the bytes arrive: that would let 14 bytes claim a megabyte.
    let max = 1 << 20;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(max as u64).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let (step, peak) = peak_while(|| {
        let mut reader = FirstMessageReader::new(max);
        reader.feed(&header);
        let step = reader.poll();
        reader.feed(&[0; 100]);
        (step, reader.poll())
    });
    assert_eq!(step, (Step::NeedMore, Step::NeedMore));
    assert!(peak < 4096, "peak {peak} bytes");
}

fn masked_binary(payload: &[u8], fin: bool, opcode: u8) -> Vec<u8> {
    let mut bytes = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | 127];
    bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes.extend_from_slice(payload);
    bytes
}

/// Feeds `bytes` in 64 KiB chunks, polling after each, and returns the message.
fn read_in_chunks(max: usize, bytes: &[u8]) -> Vec<u8> {
    let mut reader = FirstMessageReader::new(max);
    for chunk in bytes.chunks(64 * 1024) {
        reader.feed(chunk);
        match reader.poll() {
            Step::NeedMore => {}
            Step::Message { payload, .. } => return payload,
            other => panic!("{other:?}"),
        }
    }
    panic!("no message");
}

#[test]
fn a_single_frame_message_costs_about_its_size() {
    let max = 1 << 20;
    let bytes = masked_binary(&vec![3u8; max], true, 0x2);
    let (payload, peak) = peak_while(|| read_in_chunks(max, &bytes));
    assert_eq!(payload.len(), max);
    assert!(peak < max + 100 * 1024, "peak {peak} bytes for {max}");
}

#[test]
fn a_fragmented_message_costs_little_more_than_its_size() {
    let max = 1 << 20;
    let mut bytes = Vec::new();
    let fragment = vec![4u8; max / 8];
    for i in 0..8 {
        bytes.extend(masked_binary(
            &fragment,
            i == 7,
            if i == 0 { 0x2 } else { 0x0 },
        ));
    }
    let (payload, peak) = peak_while(|| read_in_chunks(max, &bytes));
    assert_eq!(payload.len(), max);
    assert!(peak < max + max / 2, "peak {peak} bytes for {max}");
}
