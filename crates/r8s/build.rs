//! How the `r8s` binary is linked.
//!
//! - At a fixed address, not as a PIE. A PIE's pointer-holding constants (vtables, static
//!   tables: about 2.4 MB in r8s) are relocated when it starts, which reads 2.7 MB of
//!   relocation records and turns every page of those constants into a private copy. Linked at
//!   a fixed address they stay clean pages of the file, read only where used: about 5 MB less
//!   resident memory. Shared libraries, the heap, stacks and mappings are still placed at
//!   random, as for Go's default (non-PIE) executables.
//! - In release builds, the functions a server runs (`layout/functions.txt.gz`, recorded by
//!   `scripts/order-functions.sh`) are placed together at the start of the code. The kernel
//!   maps code 64 KiB around each first touch, so 7 MB of functions scattered through 45 MB
//!   of code kept about 29 MB of it resident. A function the list does not name (new, or
//!   renamed since the list was recorded) keeps its usual place: a stale list costs memory,
//!   never correctness.

use std::io::Read;
use std::path::PathBuf;

const FUNCTIONS: &str = "layout/functions.txt.gz";

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={FUNCTIONS}");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        order_functions();
    }
}

/// Links with LLVM's lld, which takes the list as symbol names (GNU ld 2.40 cannot order
/// from a list; gold can, but would put read-only data in the executable segment).
fn order_functions() {
    if !on_path("ld.lld") {
        println!("cargo:warning=ld.lld not found: r8s is linked without its function order");
        return;
    }
    let mut names = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(FUNCTIONS).expect("the function list"))
        .read_to_string(&mut names)
        .expect("the function list is gzipped text");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let order = out.join("symbol-order.txt");
    std::fs::write(&order, names).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
    // Names of functions this build does not have are expected (the list ages); not warnings.
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
        order.display()
    );
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
