//! The dashboard over an export file, read-only (`powernode ui --file`).
//! To be built: see the module docs of [`super`].
