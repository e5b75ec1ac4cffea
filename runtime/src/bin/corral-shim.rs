//! `corral-shim`: the per-pod monitor. Everything lives in `runtime::shim`.

fn main() {
    std::process::exit(runtime::shim::main())
}
