"""The team cache: the fetch path across tiers, publishing, and materializing for buf/protoc."""
