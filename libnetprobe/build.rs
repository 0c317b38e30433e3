//! Compiles every `bpf/*.bpf.c` into a libbpf-rs skeleton in `OUT_DIR`.
use libbpf_cargo::SkeletonBuilder;
use std::{env, ffi::OsStr, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("no vmlinux.h for target arch {other}: add vmlinux/<arch>/vmlinux.h"),
        Err(e) => panic!("CARGO_CFG_TARGET_ARCH: {e}"),
    };
    let bpf_dir = root.join("bpf");
    let vmlinux = root.join("vmlinux").join(arch);
    let include = bpf_dir.join("include");

    let mut sources: Vec<PathBuf> = fs::read_dir(&bpf_dir)
        .expect("read bpf/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    for src in &sources {
        let stem = src
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("bpf source name");
        SkeletonBuilder::new()
            .source(src)
            .obj(out_dir.join(format!("{stem}.bpf.o")))
            .reference_obj(true)
            .clang_args([
                OsStr::new("-I"),
                vmlinux.as_os_str(),
                OsStr::new("-I"),
                include.as_os_str(),
                OsStr::new("-Wall"),
                OsStr::new("-Wno-compare-distinct-pointer-types"),
            ])
            .build_and_generate(out_dir.join(format!("{stem}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        println!("cargo:rerun-if-changed={}", src.display());
    }
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-changed={}", include.display());
    println!("cargo:rerun-if-changed={}", vmlinux.display());
}
