//! The leaf fix-up: a function that has not pushed its frame pointer yet (a frameless leaf:
//! gcc leaves leaves frameless even with `-fno-omit-frame-pointer`; Go's small functions; a
//! sample in a prologue) is invisible to a frame-pointer walk's second frame: `[rbp+8]` is its
//! caller's return address, not its own, so its caller is skipped. Decoding the leaf from its
//! first instruction to the sampled one tells how far the stack pointer moved and whether
//! `rbp` was set up; if not, the leaf's return address is in the words at the stack pointer.

/// Where the leaf's return address is, in words above the sampled stack pointer, given the
/// leaf's code from its first byte up to the sampled instruction; `None` when the leaf has
/// set up its frame (the walk is right) or its stack moves cannot be followed.
#[cfg(target_arch = "x86_64")]
pub fn return_slot(code: &[u8]) -> Option<usize> {
    use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic, OpKind, Register};
    let mut decoder = Decoder::new(64, code, DecoderOptions::NONE);
    let mut depth: i64 = 0; // bytes pushed since entry
    let mut framed = false;
    while decoder.can_decode() {
        let ins = decoder.decode();
        if ins.is_invalid() {
            return None;
        }
        let writes_rsp = || {
            (0..ins.op_count())
                .any(|i| ins.op_kind(i) == OpKind::Register && ins.op_register(i) == Register::RSP)
        };
        match ins.mnemonic() {
            Mnemonic::Push => depth += 8,
            Mnemonic::Pop => {
                depth -= 8;
                if ins.op0_kind() == OpKind::Register && ins.op0_register() == Register::RBP {
                    framed = false;
                }
            }
            Mnemonic::Sub | Mnemonic::Add
                if ins.op0_kind() == OpKind::Register && ins.op0_register() == Register::RSP =>
            {
                if !matches!(
                    ins.op1_kind(),
                    OpKind::Immediate8to64
                        | OpKind::Immediate32to64
                        | OpKind::Immediate8
                        | OpKind::Immediate32
                ) {
                    return None;
                }
                let imm = ins.immediate(1) as i64;
                depth += if ins.mnemonic() == Mnemonic::Sub {
                    imm
                } else {
                    -imm
                };
            }
            Mnemonic::Mov
                if ins.code() == Code::Mov_r64_rm64 || ins.code() == Code::Mov_rm64_r64 =>
            {
                if ins.op0_register() == Register::RBP && ins.op1_register() == Register::RSP {
                    framed = true;
                } else if ins.op0_register() == Register::RSP {
                    return None;
                }
            }
            Mnemonic::Leave | Mnemonic::Call | Mnemonic::Ret => return None,
            _ if ins.op0_kind() == OpKind::Register
                && ins.op0_register() == Register::RSP
                && writes_rsp() =>
            {
                return None;
            }
            _ => {}
        }
    }
    (!framed && depth >= 0 && depth % 8 == 0).then_some((depth / 8) as usize)
}

/// Not decoded on this architecture.
#[cfg(not(target_arch = "x86_64"))]
pub fn return_slot(_code: &[u8]) -> Option<usize> {
    None
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn a_frameless_leaf_keeps_its_return_address_where_its_pushes_put_it() {
        // push rbx; sub rsp, 0x10; mov eax, 1
        let code = [0x53, 0x48, 0x83, 0xec, 0x10, 0xb8, 0x01, 0x00, 0x00, 0x00];
        assert_eq!(return_slot(&code), Some(3));
        // At the first instruction: [rsp] is the return address.
        assert_eq!(return_slot(&[]), Some(0));
    }

    #[test]
    fn a_framed_function_needs_no_fix_up() {
        // push rbp; mov rbp, rsp; sub rsp, 0x20
        let code = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x20];
        assert_eq!(return_slot(&code), None);
        // ... and after `pop rbp` in its epilogue the walk misses the caller again.
        let code = [0x55, 0x48, 0x89, 0xe5, 0x5d];
        assert_eq!(return_slot(&code), Some(0));
    }

    #[test]
    fn stack_moves_it_cannot_follow_give_up() {
        // push rbp; mov rbp, rsp; ... leave
        assert_eq!(return_slot(&[0x55, 0x48, 0x89, 0xe5, 0xc9]), None);
        // and rsp, -16
        assert_eq!(return_slot(&[0x48, 0x83, 0xe4, 0xf0]), None);
    }
}
