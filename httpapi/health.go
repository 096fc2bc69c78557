package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/revenueguard/revguard"
)

// readyTimeout bounds the Ready check of one /readyz request.
const readyTimeout = 2 * time.Second

// handleHealthz answers 200 while the process runs.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
}

// handleReadyz answers 200 when Ready says recovery has finished and every store
// answers, else a 503 problem document. Both bodies say whether the bot check is on,
// loudly when it is off. The cause of a failure is logged; only the detail of a
// *revguard.Error, such as the name of a store that does not answer, is shown.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	var err error
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		err = s.Ready(ctx)
		cancel()
	}
	bp := getBuf()
	defer putBuf(bp)
	b := (*bp)[:0]
	status := http.StatusOK
	if err != nil {
		s.Logger.LogAttrs(r.Context(), slog.LevelWarn, "httpapi: not ready",
			slog.String("request_id", revguard.RequestIDFromContext(r.Context())), slog.Any("error", err))
		status = http.StatusServiceUnavailable
		info := problems[revguard.CodeUnavailable]
		b = append(b, `{"type":"`+problemTypePrefix+`unavailable","title":`...)
		b = appendString(b, info.title)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		// A *revguard.Error's detail is safe to show, and names what is not ready (the
		// store that does not answer); any other error's text stays in the log.
		detail := "recovery is running or a backing store does not answer"
		if d := revguard.ErrorDetail(err); d != "" {
			detail = d
		}
		b = append(b, `,"detail":`...)
		b = appendString(b, "not ready: "+detail)
		b = append(b, `,"code":"unavailable"`...)
	} else {
		b = append(b, `{"status":"ready"`...)
	}
	if s.BotChecker == nil {
		b = append(b, `,"bot_check":"off","warning":`...)
		b = appendString(b, s.BotCheckOff)
	} else {
		b = append(b, `,"bot_check":"on"`...)
	}
	b = append(b, "}\n"...)
	*bp = b
	if err != nil {
		w.Header()["Content-Type"] = problemContentType
		w.Header()["Retry-After"] = retryAfterOne // docs/api.md: every 503 carries Retry-After
		w.WriteHeader(status)
		w.Write(b)
		return
	}
	writeJSON(w, status, b)
}
