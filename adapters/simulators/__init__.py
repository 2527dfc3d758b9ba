"""Partner simulators: a fake collection agency behind each adapter's real loopback transport."""
