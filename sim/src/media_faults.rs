//! The upload and generation faults (protocol §16.3 items 11 and 12). They arrive through the
//! same directive and `/__sim/inject` channel as the chat faults and are kept apart from them
//! so the chat fault set stays readable.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaFaults {
    /// STS answers 403 (a permission error that peers do not retry).
    pub sts_403: bool,
    /// STS answers 500; inject with `count: N` for N failures then success.
    pub sts_500: bool,
    /// STS answers 200 without `security_token` and `access_key_secret`.
    pub sts_missing_fields: bool,
    /// The OSS PUT is refused with `SignatureDoesNotMatch` whatever its signature.
    pub oss_signature_mismatch: bool,
    /// The video task ends as `failed`.
    pub task_failed: bool,
    /// The video task stays `running` forever.
    pub task_never_ends: bool,
    /// The t2v reply carries no task id.
    pub task_no_id: bool,
}

impl MediaFaults {
    /// Applies one fault by name; false if the name is not a media fault.
    pub fn apply(&mut self, name: &str) -> bool {
        let flag = match name {
            "sts_403" => &mut self.sts_403,
            "sts_500" => &mut self.sts_500,
            "sts_missing_fields" => &mut self.sts_missing_fields,
            "oss_signature_mismatch" => &mut self.oss_signature_mismatch,
            "task_failed" => &mut self.task_failed,
            "task_never_ends" => &mut self.task_never_ends,
            "task_no_id" => &mut self.task_no_id,
            _ => return false,
        };
        *flag = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mut f = MediaFaults::default();
        assert!(f.apply("sts_500") && f.apply("task_no_id"));
        assert!(!f.apply("http500"));
        assert!(f.sts_500 && f.task_no_id && !f.sts_403);
    }
}
