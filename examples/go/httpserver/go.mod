module parkscope.example/httpserver

go 1.19
