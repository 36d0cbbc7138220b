module parkscope.example/chanpingpong

go 1.19
