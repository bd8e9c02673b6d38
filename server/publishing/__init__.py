"""PublishingService: businesses, connected X/LinkedIn/Meta accounts, and their publications."""
