"""Adapters to the data plane: result storage (files, GCS), the job store (files,
Redis), secret stores (local, Secret Manager) and the webapp's callbacks."""
