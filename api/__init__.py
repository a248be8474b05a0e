"""The reference HTTP layer: Spryker-Glue-compatible JSON:API endpoints and storefront landing pages."""
