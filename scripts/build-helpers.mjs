// Builds the project's small native helpers (see the preflight issue). Nothing to build yet.
