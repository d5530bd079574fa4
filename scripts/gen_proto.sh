#!/bin/sh
# Regenerates the protobuf-c sources of src/io/ from src/io/proto/*.proto (needs protoc-c from
# Debian's protobuf-c-compiler). Run from anywhere; commit the generated files.
set -e
cd "$(dirname "$0")/.."
for p in src/io/proto/*.proto; do
    protoc-c --proto_path=src/io/proto --c_out=src/io "$p"
done
