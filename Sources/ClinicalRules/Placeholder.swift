// Placeholder until this target's first slice lands.
