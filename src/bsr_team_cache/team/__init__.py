"""The team cache: the fetch path across tiers, publishing, and materializing for buf/protoc."""

# Here rather than in resolve.py: the CLI shows it in --help, which must not import the fetch
# machinery.
DEFAULT_LABEL_TTL = 24 * 3600.0
