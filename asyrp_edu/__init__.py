"""asyrp_edu."""
