//! The RET instructions of a function, where Go functions get their return probes.
use crate::error::{Error, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The `size` bytes of code at `offset` in the file at `path`.
pub fn read_code(path: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    if size == 0 {
        return Err(Error::usage(format!(
            "{}: the symbol at 0x{offset:x} has no size: its RET instructions cannot be found",
            path.display()
        )));
    }
    let io = |e| Error::io(format!("cannot read code from {}", path.display()), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut code = vec![0u8; size as usize];
    f.read_exact(&mut code).map_err(io)?;
    Ok(code)
}

/// Offsets, from the start of `code` (one x86-64 function), of its RET instructions.
#[cfg(target_arch = "x86_64")]
pub fn ret_offsets(code: &[u8]) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, FlowControl};
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut out = Vec::new();
    for ins in &mut decoder {
        if ins.flow_control() == FlowControl::Return {
            out.push(ins.ip());
        }
    }
    out
}

/// No decoder on this architecture: no RET sites.
#[cfg(not(target_arch = "x86_64"))]
pub fn ret_offsets(_code: &[u8]) -> Vec<u64> {
    Vec::new()
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn rets_are_found_past_other_instructions() {
        // push rbp; mov rbp,rsp; test edi,edi; je +1; ret; pop rbp; ret
        let code = [
            0x55, 0x48, 0x89, 0xe5, 0x85, 0xff, 0x74, 0x01, 0xc3, 0x5d, 0xc3,
        ];
        assert_eq!(ret_offsets(&code), vec![8, 10]);
    }
}
