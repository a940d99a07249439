"""The video transformer families (their blocks come from `videozoo.models.layers`)."""
