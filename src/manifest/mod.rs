//! Reading manifests (CSV and JSONL) into rows that keep the line they start on.
