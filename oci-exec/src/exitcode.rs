//! Mapping of failures to the CLI exit codes podman uses.

/// rpod itself failed (bad arguments, runtime problem, ...).
pub const EXIT_RPOD_FAILURE: u8 = 125;
/// The container command exists but cannot be invoked (permission denied, not executable).
pub const EXIT_COMMAND_CANNOT_INVOKE: u8 = 126;
/// The container command was not found.
pub const EXIT_COMMAND_NOT_FOUND: u8 = 127;

/// Map the runtime's create/start/exec error message to a CLI exit code.
///
/// * 127 when the container's command was not found (`executable file not
///   found`, or `no such file or directory` about the exec path);
/// * 126 when it cannot be executed (`permission denied`, `exec format error`,
///   `not executable`);
/// * 125 for everything else (rpod's or the runtime's own failure).
///
/// A `no such file or directory` that is not about the executed path (for
/// example an invalid rootfs) stays 125.
pub fn exit_code_for_create_error(msg: &str) -> u8 {
    let lower = msg.to_ascii_lowercase();
    if lower.contains("executable file not found") {
        return EXIT_COMMAND_NOT_FOUND;
    }
    // runc 1.1: `unable to start container process: exec: "/x": stat /x: no such file or directory`
    // runc exec: `exec failed: unable to start container process: exec: "x": ...`
    let about_exec = lower.contains("exec: \"") || lower.contains("exec:\"");
    if about_exec {
        if lower.contains("no such file or directory") {
            return EXIT_COMMAND_NOT_FOUND;
        }
        if lower.contains("permission denied")
            || lower.contains("exec format error")
            || lower.contains("not executable")
            || lower.contains("is a directory")
        {
            return EXIT_COMMAND_CANNOT_INVOKE;
        }
    }
    EXIT_RPOD_FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_runc_messages() {
        assert_eq!(
            exit_code_for_create_error(
                "runc create failed: unable to start container process: exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory"
            ),
            127
        );
        assert_eq!(
            exit_code_for_create_error(
                "runc create failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH"
            ),
            127
        );
        assert_eq!(
            exit_code_for_create_error(
                "runc create failed: unable to start container process: exec: \"/etc/passwd\": permission denied"
            ),
            126
        );
        assert_eq!(
            exit_code_for_create_error(
                "runc create failed: invalid rootfs: stat /x: no such file or directory"
            ),
            125
        );
        assert_eq!(exit_code_for_create_error("anything else"), 125);
    }
}
