package lcpb

import "time"

// DateLayout is LeanCloud's date string: createdAt/updatedAt of rows, udate
// of conversation pushes, {"__type":"Date","iso":…} values. The Java SDK
// parses exactly this layout.
const DateLayout = "2006-01-02T15:04:05.000Z"

// FormatDate formats ms since the epoch in DateLayout (UTC).
func FormatDate(ms int64) string { return time.UnixMilli(ms).UTC().Format(DateLayout) }
