"""The waitlist: patients waiting for a time, and the offers mailed to them when one frees up."""
