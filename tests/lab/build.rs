//! Compiles the lab's BPF helpers (`bpf/*.bpf.c`) into skeletons in `OUT_DIR`.
use libbpf_cargo::SkeletonBuilder;
use std::{env, ffi::OsStr, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("no vmlinux.h for target arch {other}"),
        Err(e) => panic!("CARGO_CFG_TARGET_ARCH: {e}"),
    };
    let vmlinux = root.join("vmlinux").join(arch);
    let src = manifest.join("bpf/testkit.bpf.c");
    SkeletonBuilder::new()
        .source(&src)
        .obj(out_dir.join("testkit.bpf.o"))
        .clang_args([OsStr::new("-I"), vmlinux.as_os_str(), OsStr::new("-Wall")])
        .build_and_generate(out_dir.join("testkit.skel.rs"))
        .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", vmlinux.display());
}
