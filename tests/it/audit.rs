both_backends!();
