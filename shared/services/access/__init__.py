"""Who may do what: roles and their grants, API tokens (stored hashed), the failure
throttle and the audit trail (design.md, "Security")."""
