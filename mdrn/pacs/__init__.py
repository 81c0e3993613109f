"""mdrn on the wire: a PACS sends a study, mdrn enlarges each series and sends the derived series back."""
