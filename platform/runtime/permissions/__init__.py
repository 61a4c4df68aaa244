"""Field rules, row scopes and masking: the data behind the one policy point (``crmkit.runtime.policy``)."""
