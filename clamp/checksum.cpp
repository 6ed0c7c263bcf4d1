// Placeholder: implemented with the clamp core.
