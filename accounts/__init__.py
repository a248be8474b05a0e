"""The customer account domain shared by the workflows, activities, client, API and CLI."""
