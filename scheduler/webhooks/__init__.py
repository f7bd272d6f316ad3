"""Webhooks: admins register addresses that are told, signed, of every booking change."""
