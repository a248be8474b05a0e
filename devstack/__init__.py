"""The embedded development stack, apart from production code: `accounts dev` and its SMTP sink."""
