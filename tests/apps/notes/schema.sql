-- The deployment's schema for the notes app's cache, applied once before any replica starts.
CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
