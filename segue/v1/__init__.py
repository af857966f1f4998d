"""Generated protobuf and gRPC stubs for the segue.v1 API (see proto/segue/v1/)."""
