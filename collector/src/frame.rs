//! The probes' symbolised user frames in the model's form, for every view that interns stacks
//! (the observer's thread stacks, a runtime's task stacks).

use parkscope_model::{Frame, FrameKind};

/// A symbolised user frame in the model's form (`file:line` split; text that has no line
/// number is kept whole as the file).
pub fn model_frame(f: &parkscope_probes::stacks::Frame) -> Frame {
    let (file, line) = match f.file_line.as_deref().map(|fl| (fl, fl.rsplit_once(':'))) {
        Some((_, Some((file, line)))) if line.parse::<u32>().is_ok() => {
            (Some(file.to_owned()), line.parse().ok())
        }
        Some((whole, _)) => (Some(whole.to_owned()), None),
        None => (None, None),
    };
    Frame {
        kind: FrameKind::User,
        address: f.addr,
        offset: f.function.as_ref().map(|_| f.offset),
        function: f.function.clone(),
        size: None,
        module: f.module.clone(),
        file,
        line,
    }
}
